"""Each stage's training log (loss and learning rate per logging step), kept next to its checkpoints.

The Trainer keeps its log in memory and in intermediate checkpoints only; `history.json` in the stage folder
is rewritten at every log, so an interrupted run keeps its curve and `tinyllava runs` can read it without torch.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

HISTORY_NAME = "history.json"


def write_history(folder: Path, stage: str, state: Any, started: float) -> None:
    """Atomically (write then rename) so a reader never sees half a file."""
    data = {
        "stage": stage,
        "global_step": state.global_step,
        "max_steps": state.max_steps,
        "started": started,
        "updated": time.time(),
        "log_history": list(state.log_history),
    }
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{HISTORY_NAME}.tmp"
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, folder / HISTORY_NAME)


def read_history(folder: Path) -> dict[str, Any] | None:
    path = folder / HISTORY_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def curve(history: dict[str, Any], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one logged quantity, e.g. `loss` or `learning_rate`."""
    steps, values = [], []
    for entry in history.get("log_history", []):
        if key in entry and "step" in entry:
            steps.append(int(entry["step"]))
            values.append(float(entry[key]))
    return steps, values


def final_loss(history: dict[str, Any]) -> float | None:
    """The mean training loss the Trainer reports at the end, else the last logged loss."""
    entries = history.get("log_history", [])
    for entry in reversed(entries):
        if "train_loss" in entry:
            return float(entry["train_loss"])
    _, losses = curve(history, "loss")
    return losses[-1] if losses else None


def wall_seconds(history: dict[str, Any]) -> float | None:
    for entry in reversed(history.get("log_history", [])):
        if "train_runtime" in entry:
            return float(entry["train_runtime"])
    if "started" in history and "updated" in history:
        return max(0.0, float(history["updated"]) - float(history["started"]))
    return None
