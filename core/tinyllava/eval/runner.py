"""Run benchmarks against one loaded model (loaded once for all of them)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tinyllava.components.benchmark import BenchmarkResult, EvalItem
from tinyllava.inference.pipeline import GenerationSettings, Pipeline


def generate_answers(pipeline: Pipeline, items: list[EvalItem], batch_size: int,
                     console: Console | None = None) -> dict[str, str]:
    """Greedy answers. Prompts are tokenised up front and grouped by token count, so a batch pads little (often
    not at all: then attention needs no mask). Order-independent: an answer never depends on its batch."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tinyllava.training.freed_memory import keep_freed_memory

    def convo(item: EvalItem) -> list[dict[str, str]]:
        text = f"<image>\n{item.prompt}" if item.image is not None else item.prompt
        return [{"from": "human", "value": text}]

    rows = pipeline.encode_prompts([convo(it) for it in items], [it.image for it in items])
    order = sorted(range(len(items)), key=lambda i: (items[i].image is None, items[i].max_new_tokens,
                                                     len(rows[i]), items[i].item_id))
    answers: dict[str, str] = {}
    # one block for all batches: memory a batch frees is reused by the next rather than trimmed and faulted in again
    with keep_freed_memory(), Progress(TextColumn("[bold]answering"), BarColumn(), MofNCompleteColumn(),
                                       TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("answering", total=len(order))
        for batch in answer_batches(items, order, batch_size):
            settings = GenerationSettings(max_new_tokens=items[batch[0]].max_new_tokens)
            texts = pipeline.answer_ids([rows[i] for i in batch], [items[i].image for i in batch], settings)
            for i, text in zip(batch, texts, strict=True):
                answers[items[i].item_id] = text
            progress.update(task, advance=len(batch))
    return answers


def answer_batches(items: list[EvalItem], order: list[int], batch_size: int) -> list[list[int]]:
    """Consecutive runs of `order` of at most batch_size items sharing one answer limit (max_new_tokens): an item
    never generates past its own limit because a neighbour in its batch allows more."""
    batches: list[list[int]] = []
    for i in order:
        last = batches[-1] if batches else None
        if last and len(last) < batch_size and items[last[0]].max_new_tokens == items[i].max_new_tokens:
            last.append(i)
        else:
            batches.append([i])
    return batches


def print_result(console: Console, name: str, result: BenchmarkResult) -> None:
    for t in result.tables:
        table = Table(title=f"{name}: {t.title}" if t.title != name else name)
        for col in t.columns:
            table.add_column(str(col))
        for row in t.rows:
            table.add_row(*[str(c) for c in row])
        console.print(table)


def run_benchmarks(
    pipeline: Pipeline,
    benchmarks: list[tuple[str, Any]],
    *,
    data_dir: Path | None,
    limit: int | None,
    batch_size: int,
    output_dir: Path,
    console: Console | None = None,
    registry: Any = None,
) -> dict[str, Any]:
    """Each benchmark is isolated: one that fails is recorded with its error and the others still run.

    results.json is rewritten after every benchmark, so an interrupted run keeps what it finished.
    """
    console = console or Console()
    output_dir.mkdir(parents=True, exist_ok=True)
    results_file = output_dir / "results.json"
    report: dict[str, Any] = {"model": str(pipeline.loaded.path), "benchmarks": {}, "failed": {}}
    for name, bench in benchmarks:
        try:
            report["benchmarks"][name] = _run_one(pipeline, name, bench, data_dir, limit, batch_size, output_dir,
                                                  console, registry)
        except Exception as exc:  # noqa: BLE001 - isolate benchmarks from each other
            report["failed"][name] = f"{type(exc).__name__}: {exc}"
            console.print(f"[bold red]{name} failed:[/] {type(exc).__name__}: {exc}", highlight=False)
        results_file.write_text(json.dumps(report, indent=2))
    report["results_file"] = str(results_file)
    return report


def _run_one(pipeline: Pipeline, name: str, bench: Any, data_dir: Path | None, limit: int | None,
             batch_size: int, output_dir: Path, console: Console, registry: Any) -> dict[str, Any]:
    items = bench.load_items(data_dir, limit)
    started = time.time()
    answers = generate_answers(pipeline, items, batch_size, console)
    seconds = time.time() - started
    bench_dir = output_dir / name
    bench_dir.mkdir(parents=True, exist_ok=True)
    files = bench.write_answers(items, answers, bench_dir)
    result = bench.score(items, answers, bench_dir)
    print_result(console, name, result)
    chart = score_chart(name, result.metrics, output_dir / f"{name}-scores.png", console)
    entry = {
        "metrics": result.metrics,
        "questions": len(items),
        "seconds": round(seconds, 3),
        "answers_per_second": round(len(items) / seconds, 3) if seconds > 0 else None,
        "batch_size": batch_size,
        "files": [str(f) for f in [*files, *result.files]],
        **({"chart": str(chart)} if chart is not None else {}),
    }
    if registry is not None:
        registry.call_lifecycle("after_evaluation", benchmark=name, metrics=result.metrics,
                                output_dir=str(bench_dir))
    return entry


def score_chart(name: str, metrics: dict[str, Any], path: Path, console: Console) -> Path | None:
    """A bar per category (chance levels marked where the benchmark gives them); None when there is nothing to
    draw or matplotlib is missing (the scores are in results.json either way)."""
    from tinyllava.reporting.scores import category_scores, chance_levels

    scores = category_scores(metrics)
    if not scores:
        return None
    try:
        from tinyllava.reporting.plots import bar_chart

        return bar_chart(name, scores, path, reference=chance_levels(metrics))
    except ImportError as exc:
        console.print(f"no chart for {name}: {exc} (pip install matplotlib)")
        return None
