"""`tinyllava train [SPEC]`: with no spec, the built-in quickstart (tiny model, synthetic shapes, CPU).

`--nproc N` re-launches the same command under `torch.distributed.run` with N processes on this
machine; the plain equivalent is

    torchrun --standalone --nproc-per-node N -m tinyllava_cli.app train SPEC [--set ...] [--resume]

At the end: the loss plot (`<run>/loss.png`) and the commands to evaluate and chat with the result.
On Ctrl-C: where the last checkpoint is and the command that resumes from it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

from tinyllava_cli.commands.common import console, fail

QUICKSTART = Path(__file__).resolve().parent.parent / "quickstart.yaml"


def launch_command(spec_path: Path, overrides: list[str], resume: bool, nproc: int,
                   overwrite: bool = False, launch: Any = None) -> list[str]:
    """The torchrun command line that runs `tinyllava train` in `nproc` processes (on this machine of `launch`)."""
    from tinyllava.training.distributed import Launch

    cmd = [*(launch or Launch(nproc)).torchrun(), "-m", "tinyllava_cli.app", "train", str(spec_path)]
    for item in overrides:
        cmd += ["--set", item]
    if resume:
        cmd.append("--resume")
    if overwrite:
        cmd.append("--overwrite")
    return cmd


def user_command(spec_path: Path | None, overrides: list[str], *extra: str) -> str:
    """The `tinyllava train ...` line a user types to repeat this run (with `extra` flags)."""
    parts = ["tinyllava", "train"] + ([str(spec_path)] if spec_path is not None else [])
    for item in overrides:
        parts += ["--set", item]
    return shlex.join([*parts, *extra])


def train(spec_path: Path | None, overrides: list[str], resume: bool, nproc: int = 1,
          overwrite: bool = False, launch: Any = None) -> int:
    """`launch` (a tinyllava.training.distributed.Launch) adds the machines of a multi-node run to `nproc`."""
    from tinyllava.training.distributed import Launch

    launch = launch or Launch(nproc)
    nproc = launch.nproc
    from tinyllava.spec import SpecError, load_spec

    path = spec_path or QUICKSTART
    if spec_path is None:
        console.print(f"no spec given: training the quickstart model ({QUICKSTART.name}); "
                      "`tinyllava config init quickstart > my.yaml` writes a copy to edit")
    try:
        spec = load_spec(path, overrides)  # fail here, before starting N processes
    except SpecError as exc:
        return fail(str(exc))
    if nproc < 1:
        return fail(f"--nproc {nproc}: give a number of processes, 1 or more")
    from tinyllava.training.runner import RunError, check_run_dir

    try:
        check_run_dir(spec.run_dir(), resume, overwrite)  # answered before torch is imported; the run checks again
    except RunError as exc:
        return fail(str(exc))
    if launch.problem():
        return fail(launch.problem())
    if launch.launches:
        from tinyllava.training.global_batch import batch_problems

        problems = batch_problems(spec, launch.nproc * launch.nnodes)  # here, not once per launched process
        if problems:
            return fail("; ".join(problems))
        if "LOCAL_RANK" in os.environ:
            return fail("--nproc/--nnodes are for launching; this process was already started by a launcher (torchrun)")
        where = f" on machine {launch.node_rank} of {launch.nnodes}" if launch.nnodes > 1 else ""
        console.print(f"launching {nproc} process(es){where}: torch.distributed.run ... train {path}")
        return subprocess.call(launch_command(path, overrides, resume, nproc, overwrite, launch))
    return _train(spec, resume, overwrite, spec_path, overrides)


def _train(spec: Any, resume: bool, overwrite: bool = False, spec_path: Path | None = None,
           overrides: list[str] | None = None) -> int:
    from tinyllava.data.records import DataError
    from tinyllava.training.runner import RunError, run_training

    started = time.time()
    try:
        result = run_training(spec, resume=resume, console=console, overwrite=overwrite)
    except (RunError, DataError, ValueError) as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        if int(os.environ.get("RANK", "0")) == 0:
            interrupted(spec, spec_path, overrides or [])
        return 130
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    for stage in result.stages:
        loss = f"{stage.train_loss:.4f}" if stage.train_loss is not None else "-"
        console.print(f"stage {stage.name}: {stage.steps} steps, train loss {loss}, {stage.seconds:.1f}s")
    console.print(f"done in {time.time() - started:.1f}s")
    console.print(f"checkpoint: {result.checkpoint}")
    plot = _loss_plot(result.run_dir)
    if plot is not None:
        console.print(f"loss plot: {plot}")
    print_next_steps(spec, result.run_dir)
    return 0


def _loss_plot(run_dir: Path) -> Path | None:
    try:
        from tinyllava.reporting.runs import loss_plot_for_run

        return loss_plot_for_run(run_dir)
    except ImportError as exc:
        console.print(f"no loss plot: {exc} (pip install matplotlib)")
        return None


def _benchmark_for(spec: Any) -> str:
    """`shapes` when the run trained on the shapes data (its benchmark has the same name), else a placeholder."""
    for stage in spec.stages:
        data = stage.data or spec.data
        if data is not None and data.dataset is not None and data.dataset.name == "shapes":
            return "shapes"
    return "BENCHMARK"


def print_next_steps(spec: Any, run_dir: Path) -> None:
    model = shlex.quote(str(run_dir / "latest"))
    console.print("next:", highlight=False)
    console.print(f"  tinyllava eval --model {model} --benchmark {_benchmark_for(spec)}", highlight=False)
    console.print(f"  tinyllava chat --model {model} --image PICTURE.png", highlight=False)
    console.print("  tinyllava runs", highlight=False)


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest thing a resume continues from: an intermediate Trainer checkpoint or a finished stage."""
    found = [p for p in run_dir.glob("stage*/checkpoints/checkpoint-*") if p.is_dir()]
    found += [p for p in run_dir.glob("stage*/final") if p.is_dir()]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def interrupted(spec: Any, spec_path: Path | None, overrides: list[str]) -> None:
    from tinyllava.training.progress import close_progress

    close_progress()
    run_dir = spec.run_dir()
    checkpoint = last_checkpoint(run_dir) if run_dir.is_dir() else None
    console.print()
    if checkpoint is None:
        console.print("interrupted before the first checkpoint: nothing was kept; rerun the same command to start "
                      "again", highlight=False)
        return
    console.print(f"interrupted. last checkpoint: {checkpoint}", highlight=False)
    console.print(f"resume with: {user_command(spec_path, overrides, '--resume')}", highlight=False)
