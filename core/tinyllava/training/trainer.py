"""The Hugging Face Trainer with our parameter groups and a rich progress display."""

from __future__ import annotations

from typing import Any

import torch
from transformers import Trainer, TrainerCallback


class TinyLlavaTrainer(Trainer):
    """Uses the recipe's parameter groups (per-component lr, no decay on norms/biases)."""

    def __init__(self, *args: Any, param_groups: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._param_groups = param_groups

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, model or self.model)
            kwargs.pop("lr", None)
            groups = [dict(g) for g in self._param_groups]
            self.optimizer = optimizer_cls(groups, lr=groups[0]["lr"], **kwargs)
        return self.optimizer


class RichProgressCallback(TrainerCallback):
    """One rich progress bar per stage, showing loss and learning rate."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.progress: Any = None
        self.task: Any = None
        self.last: dict[str, float] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
        )
        self.progress.start()
        self.task = self.progress.add_task(self.title, total=state.max_steps, completed=state.global_step, info="")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any) -> None:
        if self.progress is None or not logs:
            return
        if "loss" in logs:
            self.last = logs
            self.progress.update(self.task, info=f"loss {logs['loss']:.4f}  lr {logs.get('learning_rate', 0):.2e}")

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)
            self.progress.stop()
            self.progress = None
