"""`tinyllava eval compare RUN_OR_RESULTS...`: several checkpoints' scores side by side, as a table and a chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tinyllava_cli.commands.common import console, fail


def find_results(target: Path) -> Path | None:
    """A results.json file; a folder holding one; a run or checkpoint folder: the newest results.json below it."""
    if target.is_file():
        return target
    if not target.is_dir():
        return None
    if (target / "results.json").is_file():
        return target / "results.json"
    from tinyllava.reporting.runs import latest_results

    return latest_results(target)


def labels_for(targets: list[Path]) -> list[str]:
    """Short column names: each target as given, made unique."""
    labels: list[str] = []
    for target in targets:
        label = str(target).rstrip("/") or str(target)
        while label in labels:
            label += "'"
        labels.append(label)
    return labels


def comparison(results: list[dict[str, Any]]) -> tuple[list[tuple[str, str]], list[list[float | None]]]:
    """Rows (benchmark, category) in first-seen order and, per result, the score of each row (None: absent)."""
    from tinyllava.reporting.scores import category_scores

    per_result = []
    rows: list[tuple[str, str]] = []
    for data in results:
        scores: dict[tuple[str, str], float] = {}
        for bench, entry in data["benchmarks"].items():
            for category, value in category_scores(entry.get("metrics", {}) if isinstance(entry, dict) else {}).items():
                scores[(bench, category)] = value
                if (bench, category) not in rows:
                    rows.append((bench, category))
        per_result.append(scores)
    return rows, [[scores.get(row) for row in rows] for scores in per_result]


def compare(targets: list[Path], output: Path | None) -> int:
    from rich.table import Table

    from tinyllava.reporting.scores import read_results

    if len(targets) < 1:
        return fail("give one or more runs, checkpoints or results.json files")
    files, results = [], []
    for target in targets:
        found = find_results(target)
        if found is None:
            where = "does not exist" if not target.exists() else "holds no results.json (run `tinyllava eval` first)"
            return fail(f"{target} {where}")
        try:
            results.append(read_results(found))
        except (OSError, ValueError) as exc:
            return fail(f"{found}: {exc}")
        files.append(found)
    labels = labels_for(targets)
    rows, columns = comparison(results)
    if not rows:
        return fail("no scores to compare in " + ", ".join(str(f) for f in files))
    table = Table(title="scores")
    table.add_column("benchmark")
    table.add_column("category")
    for label in labels:
        table.add_column(label, justify="right")
    for i, (bench, category) in enumerate(rows):
        cells = [f"{col[i]:.4g}" if col[i] is not None else "-" for col in columns]
        table.add_row(bench, category, *cells)
    console.print(table)
    for label, file in zip(labels, files, strict=True):
        console.print(f"{label}: {file}", highlight=False)
    out = output or Path("compare.png")
    data = {"rows": [{"benchmark": b, "category": c} for b, c in rows],
            "results": [{"label": label, "file": str(f), "scores": col}
                        for label, f, col in zip(labels, files, columns, strict=True)]}
    out.parent.mkdir(parents=True, exist_ok=True)
    json_file = out.with_suffix(".json")
    json_file.write_text(json.dumps(data, indent=2))
    console.print(f"table: {json_file}", highlight=False)
    try:
        from tinyllava.reporting.plots import grouped_bar_chart
    except ImportError as exc:
        console.print(f"no chart: {exc} (pip install matplotlib)")
        return 0
    categories = [c if len({b for b, _ in rows}) == 1 else f"{b}:{c}" for b, c in rows]
    grouped_bar_chart("scores", categories, dict(zip(labels, columns, strict=True)), out)
    console.print(f"chart: {out}", highlight=False)
    return 0
