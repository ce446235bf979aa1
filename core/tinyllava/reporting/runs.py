"""Summaries of the runs under an output folder, read from files only (spec.json, history.json, results.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyllava.reporting.history import final_loss, read_history, wall_seconds
from tinyllava.reporting.scores import headline


@dataclass
class StageSummary:
    name: str
    steps: int | None
    max_steps: int | None
    loss: float | None
    seconds: float | None
    finished: bool


@dataclass
class RunSummary:
    name: str
    path: Path
    stages: list[StageSummary] = field(default_factory=list)
    eval_score: str | None = None   # e.g. "shapes overall/accuracy 0.953"
    eval_file: Path | None = None

    @property
    def seconds(self) -> float | None:
        known = [s.seconds for s in self.stages if s.seconds is not None]
        return sum(known) if known else None

    @property
    def final_loss(self) -> float | None:
        losses = [s.loss for s in self.stages if s.loss is not None]
        return losses[-1] if losses else None


def stage_folders(run_dir: Path, spec: dict[str, Any]) -> list[tuple[str, Path]]:
    names = [str(s.get("name")) for s in spec.get("stages", []) if isinstance(s, dict)]
    return [(name, run_dir / f"stage{i}-{name}") for i, name in enumerate(names)]


def summarize_run(run_dir: Path) -> RunSummary | None:
    """None when the folder holds no run (no readable spec.json)."""
    try:
        spec = json.loads((run_dir / "spec.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(spec, dict):
        return None
    summary = RunSummary(name=run_dir.name, path=run_dir)
    for name, folder in stage_folders(run_dir, spec):
        history = read_history(folder) or {}
        finished = (folder / "final").is_dir()
        summary.stages.append(StageSummary(
            name=name, steps=history.get("global_step"), max_steps=history.get("max_steps"),
            loss=final_loss(history) if history else None, seconds=wall_seconds(history) if history else None,
            finished=finished,
        ))
    latest = latest_results(run_dir)
    if latest is not None:
        summary.eval_file = latest
        summary.eval_score = describe_results(latest)
    return summary


def latest_results(run_dir: Path) -> Path | None:
    """The newest results.json anywhere below the run (`tinyllava eval` writes <checkpoint>/eval by default)."""
    found = [p for p in run_dir.glob("**/results.json") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def describe_results(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    parts = []
    for bench, entry in (data.get("benchmarks") or {}).items():
        best = headline(entry.get("metrics", {})) if isinstance(entry, dict) else None
        if best is not None:
            parts.append(f"{bench} {best[0]} {best[1]:.3g}")
    return "; ".join(parts) or None


def list_runs(root: Path) -> list[RunSummary]:
    if not root.is_dir():
        return []
    runs = [summarize_run(p) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    return [r for r in runs if r is not None]


def loss_plot_for_run(run_dir: Path) -> Path | None:
    """Write <run>/loss.png from the stages' histories; None when nothing was logged."""
    from tinyllava.reporting.plots import loss_plot

    try:
        spec = json.loads((run_dir / "spec.json").read_text())
    except (OSError, ValueError):
        return None
    stages = [(name, h) for name, folder in stage_folders(run_dir, spec) if (h := read_history(folder))]
    return loss_plot(stages, run_dir / "loss.png")
