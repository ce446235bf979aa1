"""PNG charts with matplotlib's Agg backend (no display needed), imported only when a chart is drawn."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _unit_range(ax: Any, values: Any) -> None:
    """Fractions get a 0-1 axis, so a zero or a perfect score reads as such."""
    values = list(values)
    if values and all(0.0 <= v <= 1.0 for v in values):
        ax.set_ylim(0.0, 1.08)


def loss_plot(stages: list[tuple[str, dict[str, Any]]], path: Path) -> Path | None:
    """One panel per stage: training loss (left axis) and learning rate (right axis) against the step.

    `stages` pairs each stage's name with its history (see reporting.history); stages without a logged loss
    are left out. Returns the written path, or None when no stage logged anything.
    """
    from tinyllava.reporting.history import curve

    panels = [(name, h) for name, h in stages if curve(h, "loss")[0]]
    if not panels:
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.8 * len(panels)), squeeze=False)
    for ax, (name, history) in zip(axes[:, 0], panels, strict=True):
        steps, losses = curve(history, "loss")
        ax.plot(steps, losses, color="tab:blue", marker="." if len(steps) < 30 else None, label="loss")
        ax.set_ylabel("training loss", color="tab:blue")
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"stage {name}")
        ax.grid(alpha=0.3)
        lr_steps, lrs = curve(history, "learning_rate")
        if lr_steps:
            twin = ax.twinx()
            twin.plot(lr_steps, lrs, color="tab:orange", linestyle="--", label="learning rate")
            twin.set_ylabel("learning rate", color="tab:orange")
            twin.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def bar_chart(title: str, scores: dict[str, float], path: Path, reference: dict[str, float] | None = None) -> Path:
    """One bar per category; `reference` (e.g. chance level) drawn as a tick over each bar that has one."""
    plt = _pyplot()
    names = list(scores)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(names) + 2), 3.6))
    bars = ax.bar(range(len(names)), [scores[n] for n in names], color="tab:blue")
    ax.bar_label(bars, fmt="%.3g", fontsize=8)
    _unit_range(ax, scores.values())
    if reference:
        for i, name in enumerate(names):
            if name in reference:
                ax.hlines(reference[name], i - 0.4, i + 0.4, colors="tab:red", linestyles="--")
        ax.plot([], [], color="tab:red", linestyle="--", label="chance")
        ax.legend(fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=30 if len(names) > 5 else 0, ha="right" if len(names) > 5
                  else "center", fontsize=8)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def grouped_bar_chart(title: str, categories: list[str], series: dict[str, list[float | None]], path: Path) -> Path:
    """Bars grouped by category, one colour per series (a checkpoint); a missing value leaves a gap."""
    plt = _pyplot()
    count = max(len(series), 1)
    width = 0.8 / count
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(categories) * max(1, count / 2) + 2), 4.0))
    for k, (label, values) in enumerate(series.items()):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(categories))]
        heights = [v if v is not None else 0.0 for v in values]
        ax.bar(xs, heights, width=width, label=label)
    _unit_range(ax, [v for values in series.values() for v in values if v is not None])
    ax.set_xticks(range(len(categories)), categories, rotation=30 if len(categories) > 4 else 0,
                  ha="right" if len(categories) > 4 else "center", fontsize=8)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
