"""`tinyllava train [SPEC]`: with no spec, the built-in quickstart (tiny model, synthetic shapes, CPU).

`--nproc N` re-launches the same command under `torch.distributed.run` with N processes on this
machine; the plain equivalent is

    torchrun --standalone --nproc-per-node N -m tinyllava_cli.app train SPEC [--set ...] [--resume]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tinyllava_cli.commands.common import console, fail

QUICKSTART = Path(__file__).resolve().parent.parent / "quickstart.yaml"


def launch_command(spec_path: Path, overrides: list[str], resume: bool, nproc: int) -> list[str]:
    """The torchrun command line that runs `tinyllava train` in `nproc` processes."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "tinyllava_cli.app", "train", str(spec_path)]
    for item in overrides:
        cmd += ["--set", item]
    if resume:
        cmd.append("--resume")
    return cmd


def train(spec_path: Path | None, overrides: list[str], resume: bool, nproc: int = 1) -> int:
    from tinyllava.spec import SpecError, load_spec

    path = spec_path or QUICKSTART
    if spec_path is None:
        console.print(f"no spec given: training the quickstart model ({QUICKSTART.name}); "
                      "copy configs/quickstart.yaml to change it")
    try:
        spec = load_spec(path, overrides)  # fail here, before starting N processes
    except SpecError as exc:
        return fail(str(exc))
    if nproc < 1:
        return fail(f"--nproc {nproc}: give a number of processes, 1 or more")
    if nproc > 1:
        if "LOCAL_RANK" in os.environ:
            return fail("--nproc is for launching; this process was already started by a launcher (torchrun)")
        console.print(f"launching {nproc} processes: torch.distributed.run ... train {path}")
        return subprocess.call(launch_command(path, overrides, resume, nproc))
    return _train(spec, resume)


def _train(spec: object, resume: bool) -> int:
    from tinyllava.data.records import DataError
    from tinyllava.training.runner import RunError, run_training

    started = time.time()
    try:
        result = run_training(spec, resume=resume, console=console)  # type: ignore[arg-type]
    except (RunError, DataError, ValueError) as exc:
        return fail(str(exc))
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    for stage in result.stages:
        loss = f"{stage.train_loss:.4f}" if stage.train_loss is not None else "-"
        console.print(f"stage {stage.name}: {stage.steps} steps, train loss {loss}, {stage.seconds:.1f}s")
    console.print(f"done in {time.time() - started:.1f}s")
    console.print(f"checkpoint: {result.checkpoint}")
    return 0
