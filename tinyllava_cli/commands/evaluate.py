"""`tinyllava eval`: one model, one or more benchmarks; tables on screen, JSON on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tinyllava_cli.commands.common import console, early_problem, fail, load_pipeline


def parse_options(benchmarks: list[str], options: list[str]) -> dict[str, dict[str, Any]]:
    """`-O name.key=value` -> {name: {key: value}}; values follow YAML scalar rules."""
    from tinyllava.spec.overrides import parse_value

    parsed: dict[str, dict[str, Any]] = {name: {} for name in benchmarks}
    for item in options:
        key, sep, text = item.partition("=")
        name, dot, field = key.partition(".")
        if not sep or not dot or not field:
            raise ValueError(f"option {item!r}: expected BENCHMARK.KEY=VALUE, e.g. mmvet.judge_model=gpt-4o")
        if name not in parsed:
            raise ValueError(f"option {item!r}: benchmark {name!r} is not among --benchmark {', '.join(benchmarks)}")
        parsed[name][field] = parse_value(text)
    return parsed


def evaluate(model: Path, benchmarks: list[str], data: Path | None, limit: int | None, batch_size: int,
             output: Path | None, options: list[str], device: str = "auto", dtype: str = "auto") -> int:
    problem = early_problem(model, device, dtype)  # before torch: a misspelt flag or path is answered at once
    if problem:
        return fail(problem)
    from pydantic import ValidationError

    from tinyllava.eval.runner import run_benchmarks
    from tinyllava.plugins.registry import ComponentNotFoundError, get_registry
    from tinyllava.spec.errors import pydantic_problems

    if batch_size < 1:
        return fail(f"--batch-size {batch_size}: give at least 1")

    registry = get_registry()
    try:
        per_bench = parse_options(benchmarks, options)
        chosen = [(name, registry.create("benchmark", name, per_bench[name])) for name in benchmarks]
    except ComponentNotFoundError as exc:
        return fail(str(exc))
    except ValidationError as exc:
        return fail("bad benchmark option: " + "; ".join(pydantic_problems(exc)))
    except ValueError as exc:
        return fail(str(exc))
    pipeline, problem = load_pipeline(model, device, dtype)
    if problem:
        return fail(problem)
    out = output or (Path(model) / "eval")
    report = run_benchmarks(pipeline, chosen, data_dir=data, limit=limit, batch_size=batch_size,
                            output_dir=out, console=console, registry=registry)
    for name, entry in report["benchmarks"].items():
        console.print(f"{name}: {entry['questions']} questions in {entry['seconds']}s "
                      f"({entry['answers_per_second']} answers/s at batch {batch_size})")
        if entry.get("chart"):
            console.print(f"{name} chart: {entry['chart']}", highlight=False)
    console.print(f"results: {report['results_file']}")
    if report["failed"]:
        return fail(f"{len(report['failed'])} benchmark(s) failed: {', '.join(report['failed'])}", code=1)
    return 0
