"""`tinyllava eval`: one model, one or more benchmarks; tables on screen, JSON on disk."""

from __future__ import annotations

import json
from pathlib import Path

from tinyllava_cli.commands.common import console, fail


def evaluate(model: Path, benchmarks: list[str], data: Path | None, limit: int | None, batch_size: int,
             output: Path | None) -> int:
    from tinyllava.checkpoint.load import CheckpointError
    from tinyllava.components.benchmark import DataLayoutError
    from tinyllava.inference import Pipeline
    from tinyllava.plugins.registry import ComponentNotFoundError, get_registry

    from tinyllava.eval.runner import run_benchmarks

    registry = get_registry()
    try:
        chosen = [(name, registry.create("benchmark", name, {})) for name in benchmarks]
    except ComponentNotFoundError as exc:
        return fail(str(exc))
    try:
        pipeline = Pipeline.from_checkpoint(model)
    except (CheckpointError, FileNotFoundError) as exc:
        return fail(str(exc))
    out = output or (Path(model) / "eval")
    try:
        report = run_benchmarks(pipeline, chosen, data_dir=data, limit=limit, batch_size=batch_size,
                                output_dir=out, console=console, registry=registry)
    except (DataLayoutError, ValueError) as exc:
        return fail(str(exc))
    for name, entry in report["benchmarks"].items():
        console.print(f"{name}: {entry['questions']} questions in {entry['seconds']}s "
                      f"({entry['answers_per_second']} answers/s at batch {batch_size})")
    console.print(f"results: {report['results_file']}")
    _ = json  # results are written by the runner
    return 0
