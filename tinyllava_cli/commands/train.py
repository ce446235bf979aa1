"""`tinyllava train [SPEC]`: with no spec, the built-in quickstart (tiny model, synthetic shapes, CPU)."""

from __future__ import annotations

import time
from pathlib import Path

from tinyllava_cli.commands.common import console, fail

QUICKSTART = Path(__file__).resolve().parent.parent / "quickstart.yaml"


def train(spec_path: Path | None, overrides: list[str], resume: bool) -> int:
    from tinyllava.data.records import DataError
    from tinyllava.spec import SpecError, load_spec
    from tinyllava.training.runner import RunError, run_training

    path = spec_path or QUICKSTART
    if spec_path is None:
        console.print(f"no spec given: training the quickstart model ({QUICKSTART.name}); "
                      "copy configs/quickstart.yaml to change it")
    try:
        spec = load_spec(path, overrides)
    except SpecError as exc:
        return fail(str(exc))
    started = time.time()
    try:
        result = run_training(spec, resume=resume, console=console)
    except (RunError, DataError, ValueError) as exc:
        return fail(str(exc))
    for stage in result.stages:
        loss = f"{stage.train_loss:.4f}" if stage.train_loss is not None else "-"
        console.print(f"stage {stage.name}: {stage.steps} steps, train loss {loss}, {stage.seconds:.1f}s")
    console.print(f"done in {time.time() - started:.1f}s")
    console.print(f"checkpoint: {result.checkpoint}")
    return 0
