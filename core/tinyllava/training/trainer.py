"""The Hugging Face Trainer with our parameter groups, slim intermediate checkpoints and a rich progress display."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from tinyllava.training.parameters import COMPONENTS, cast_frozen, component_module, restore_frozen

TRAINABLE_WEIGHTS = "model.safetensors"


class TinyLlavaTrainer(Trainer):
    """Uses the recipe's parameter groups (per-component lr, no decay on norms/biases).

    Intermediate checkpoints hold only the trainable weights (plus optimizer, scheduler and RNG
    state): the frozen ones are rebuilt exactly when the stage restarts, so a frozen 7B LLM is not
    rewritten every `save_steps`, and 4-bit layers never go through a state dict round trip.
    """

    def __init__(self, *args: Any, param_groups: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._param_groups = param_groups

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """Train with the frozen weights in the compute dtype (bf16 stages); the originals are put back after."""
        changed = self._cast_frozen_weights()
        try:
            return super().train(*args, **kwargs)
        finally:
            restore_frozen(changed)

    def _cast_frozen_weights(self) -> dict[Any, Any]:
        if not self.args.bf16 or self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return {}  # fp32 stages, and engines that manage dtypes themselves
        dtype = torch.bfloat16
        quantized = tuple(c for c in COMPONENTS if any(
            getattr(p, "quant_state", None) is not None or p.dtype in (torch.uint8, torch.int8)
            for p in component_module(self.model, c).parameters()))
        return cast_frozen(self.model, dtype, skip=quantized)

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            groups = [dict(g) for g in self._param_groups]
            ds_config = getattr(self.args, "hf_deepspeed_config", None)
            if self.is_deepspeed_enabled and ds_config is not None and ds_config.is_offload():
                from deepspeed.ops.adam import DeepSpeedCPUAdam  # ZeRO-Offload needs DeepSpeed's CPU Adam

                self.optimizer = DeepSpeedCPUAdam(
                    groups, lr=groups[0]["lr"], betas=(self.args.adam_beta1, self.args.adam_beta2),
                    eps=self.args.adam_epsilon, adamw_mode=True,
                )
            else:
                optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, model or self.model)
                kwargs.pop("lr", None)
                if optimizer_cls is torch.optim.AdamW:
                    kwargs.update(multi_tensor_adamw(groups, kwargs))
                self.optimizer = optimizer_cls(groups, lr=groups[0]["lr"], **kwargs)
        return self.optimizer

    def _trainable_names(self) -> list[str]:
        return [n for n, p in self.model.named_parameters() if p.requires_grad]

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        from pathlib import Path

        from safetensors.torch import save_file
        from transformers.trainer import TRAINING_ARGS_NAME

        from tinyllava.checkpoint.save import follow_umask

        if not self.args.should_save:
            return
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        names = self._trainable_names()
        if state_dict is None or not state_dict:
            params = dict(self.model.named_parameters())
            tensors = {n: params[n].detach() for n in names}
        else:  # DeepSpeed hands over the (gathered) state dict
            tensors = {n: state_dict[n] for n in names if n in state_dict}
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                  os.path.join(output_dir, TRAINABLE_WEIGHTS), metadata={"format": "pt", "content": "trainable"})
        follow_umask(Path(output_dir))
        torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        """The Trainer's checkpoint, written atomically: into a hidden sibling, renamed into place once complete."""
        from tinyllava.checkpoint.atomic import save_trainer_checkpoint

        save_trainer_checkpoint(self, super()._save_checkpoint, model, trial)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        from safetensors.torch import load_file

        model = model or self.model
        path = os.path.join(resume_from_checkpoint, TRAINABLE_WEIGHTS)
        if not os.path.isfile(path):
            raise ValueError(f"{resume_from_checkpoint} has no {TRAINABLE_WEIGHTS}; it cannot be resumed")
        state = load_file(path)
        expected = set(self._trainable_names())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise ValueError(
                f"{resume_from_checkpoint}: its trainable weights do not match this stage's (missing {missing[:3]}, "
                f"unexpected {unexpected[:3]}); was the stage's `tune` changed? Resume needs the same spec"
            )
        model.load_state_dict(state, strict=False)


def multi_tensor_adamw(groups: list[dict[str, Any]], kwargs: dict[str, Any]) -> dict[str, Any]:
    """AdamW's fused kernel where every parameter's device and dtype has one, else its foreach one.

    One kernel over all tensors instead of a Python loop over parameters; an explicit choice in
    `kwargs` (e.g. from `optim`) is kept.
    """
    if kwargs.get("fused") is not None or kwargs.get("foreach") is not None:
        return {}
    params = [p for g in groups for p in g["params"]]
    fused_devices = {"cpu", "cuda", "mps", "xpu"}
    fused_dtypes = {torch.float16, torch.bfloat16, torch.float32, torch.float64}
    if params and all(p.device.type in fused_devices and p.dtype in fused_dtypes for p in params):
        return {"fused": True}
    return {"foreach": True}


class ParameterTableCallback(TrainerCallback):
    """Shows the per-component parameter table once the engine has wrapped (and maybe partitioned) the model."""

    def __init__(self, show: Callable[[Any], None]) -> None:
        self.show = show

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if state.is_world_process_zero and model is not None:
            self.show(model)


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
