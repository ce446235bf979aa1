"""Pick what to chart and compare from a benchmark's flat metrics (each benchmark names its own keys).

Counts (integers, and keys such as questions, answered, num), chance levels and spreads are not scores; `X/accuracy`
is shown as `X`; `X/chance` becomes the reference tick of `X`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NOT_SCORES = {"chance", "num", "questions", "answered", "evaluated", "tasks_scored", "std", "count", "seconds"}
HEADLINE_KEYS = ("overall/accuracy", "overall", "accuracy", "total", "score", "average", "mean")
MAX_CATEGORIES = 40


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def category_scores(metrics: dict[str, Any]) -> dict[str, float]:
    """Label -> score for every float metric that is a score, in the benchmark's own order."""
    scores: dict[str, float] = {}
    for key, value in metrics.items():
        if not isinstance(value, float) or key.startswith("run/"):
            continue
        parts = key.split("/")
        if parts[-1] in NOT_SCORES:
            continue
        label = "/".join(parts[:-1]) if parts[-1] == "accuracy" and len(parts) > 1 else key
        scores[label] = float(value)
        if len(scores) >= MAX_CATEGORIES:
            break
    return scores


def chance_levels(metrics: dict[str, Any]) -> dict[str, float]:
    return {k.removesuffix("/chance"): float(v) for k, v in metrics.items() if k.endswith("/chance") and _is_number(v)}


def headline(metrics: dict[str, Any]) -> tuple[str, float] | None:
    """The benchmark's one-number summary, when it has one."""
    for key in HEADLINE_KEYS:
        if _is_number(metrics.get(key)):
            return key, float(metrics[key])
    return None


def read_results(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), dict):
        raise ValueError(f"{path} is not a tinyllava results.json (no 'benchmarks')")
    return data
