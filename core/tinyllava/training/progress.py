"""Training progress for people: a live bar on a terminal, plain lines in a log file, and the stage's history.

When stdout is not a terminal (a log file, `nohup`, CI) a rich bar prints nothing until the end, so a
plain line goes out every `logging_steps` instead: step/total, loss, lr, samples/s and ETA.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

from transformers import TrainerCallback

from tinyllava.reporting.history import write_history

_ACTIVE: list[Any] = []  # live displays to close if training is interrupted


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class PlainProgressCallback(TrainerCallback):
    """One flushed line per log, e.g.
    `stage 1/2 align: step 20/750 (2%) loss 2.3456 lr 1.00e-03 41.2 samples/s ETA 4m10s`."""

    def __init__(self, title: str, stream: TextIO | None = None) -> None:
        self.title = title
        self.stream = stream
        self.begin_time = 0.0
        self.begin_step = 0

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout, flush=True)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.begin_time = time.time()
        self.begin_step = state.global_step
        if state.is_world_process_zero:
            self._print(f"{self.title}: {state.max_steps} steps" +
                        (f", resuming at step {state.global_step}" if state.global_step else ""))

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any) -> None:
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        self._print(progress_line(self.title, state.global_step, state.max_steps, logs,
                                  time.time() - self.begin_time, state.global_step - self.begin_step,
                                  samples_per_step(args)))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self._print(f"{self.title}: finished at step {state.global_step} "
                        f"in {format_duration(time.time() - self.begin_time)}")


def samples_per_step(args: Any) -> int:
    return int(args.per_device_train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1))


def progress_line(title: str, step: int, total: int, logs: dict[str, float], elapsed: float, steps_done: int,
                  per_step: int) -> str:
    parts = [f"{title}: step {step}/{total}" + (f" ({100 * step // total}%)" if total else "")]
    parts.append(f"loss {logs['loss']:.4f}")
    if "learning_rate" in logs:
        parts.append(f"lr {logs['learning_rate']:.2e}")
    if steps_done > 0 and elapsed > 0:
        parts.append(f"{steps_done * per_step / elapsed:.1f} samples/s")
        parts.append(f"ETA {format_duration((total - step) * elapsed / steps_done)}")
    return " ".join(parts)


class HistoryCallback(TrainerCallback):
    """Keeps `<stage folder>/history.json` (the Trainer's log) current: the loss plot and `tinyllava runs` read it."""

    def __init__(self, folder: Path, stage: str) -> None:
        self.folder = folder
        self.stage = stage
        self.started = time.time()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.started = time.time()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any) -> None:
        if state.is_world_process_zero:
            write_history(self.folder, self.stage, state, self.started)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            write_history(self.folder, self.stage, state, self.started)


def is_terminal(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def progress_callback(title: str) -> TrainerCallback:
    """The rich bar on a terminal, plain lines otherwise; remembered so an interrupt can close it."""
    from tinyllava.training.trainer import RichProgressCallback

    callback: TrainerCallback = RichProgressCallback(title) if is_terminal() else PlainProgressCallback(title)
    _ACTIVE.append(callback)
    return callback


def close_progress() -> None:
    """Stop any live bar left running (Ctrl-C skips on_train_end), so the next message starts on a clean line."""
    while _ACTIVE:
        callback = _ACTIVE.pop()
        progress = getattr(callback, "progress", None)
        if progress is not None:
            progress.stop()
            callback.progress = None
