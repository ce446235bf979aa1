"""Helpers for tests that run `tinyllava train` in fresh processes and compare what the runs produced."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tinyllava.testing.timeouts import SUBPROCESS_TIMEOUT_S

EXE = str(Path(sys.executable).parent / "tinyllava")
ENV = {**os.environ, "COLUMNS": "250", "OMP_NUM_THREADS": "1"}


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`tinyllava ARGS` in a fresh process; the limit only catches a hang (see tinyllava.testing.timeouts)."""
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S,
                          env={**ENV, **(env or {})})


def failure(proc: subprocess.CompletedProcess) -> str:
    """What went wrong in a CLI run: error lines first (torchrun buries a worker's message), then the tails."""
    text = proc.stdout + proc.stderr
    errors = [line for line in text.splitlines() if "error" in line.lower()]
    return "\n".join(errors[:20]) + "\n---\n" + proc.stdout[-2000:] + proc.stderr[-2000:]


def saved_step(checkpoints: Path) -> int:
    """The step of the newest complete Trainer checkpoint in `checkpoints` (0: none yet). Wait on this, not on one
    checkpoint's name: with save_total_limit a fast run deletes older checkpoints within milliseconds."""
    from tinyllava.training.runner import last_trainer_checkpoint

    last = last_trainer_checkpoint(checkpoints)
    return int(last.name.split("-")[-1]) if last is not None else 0


def weights(ckpt: Path) -> dict[str, Any]:
    """Every tensor a checkpoint holds: base weights and adapters, keyed `base/NAME` and `COMPONENT/NAME`."""
    from safetensors.torch import load_file

    out = {f"base/{k}": v for k, v in load_file(ckpt / "model.safetensors").items()}
    for adapter in sorted((ckpt / "adapters").glob("*/adapter_model.safetensors")):
        out.update({f"{adapter.parent.name}/{k}": v for k, v in load_file(adapter).items()})
    return out


def max_weight_difference(a: dict[str, Any], b: dict[str, Any]) -> float:
    """The largest absolute difference over all tensors of two checkpoints (which must hold the same names)."""
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))[:5]
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def losses(stage_folder: Path) -> list[float]:
    """The per-step training losses of a stage, from its newest Trainer checkpoint's log history."""
    ckpts = sorted((stage_folder / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    assert ckpts, f"no Trainer checkpoint in {stage_folder}"
    history = json.loads((ckpts[-1] / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


def parameter_rows(stdout: str) -> dict[str, tuple[int, int, str]]:
    """The parameter table a run printed: component -> (total, trainable, mode)."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 4 and cells[0] in ("llm", "vision_tower", "connector"):
            rows[cells[0]] = (int(cells[1].replace(",", "")), int(cells[2].replace(",", "")), cells[3])
    return rows


def kill_tree(pid: int) -> None:
    """SIGKILL a run with every process it started (torchrun starts its workers in sessions of their own)."""
    import psutil

    try:
        parent = psutil.Process(pid)
        family = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    for proc in family:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
