"""`tinyllava runs`: the runs under ./runs (or --dir) with stages, steps, final loss, wall time, latest eval."""

from __future__ import annotations

import json
from pathlib import Path

from tinyllava_cli.commands.common import console, fail


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def runs(root: Path, as_json: bool = False) -> int:
    from rich.table import Table

    from tinyllava.reporting.runs import list_runs

    if not root.is_dir():
        return fail(f"{root} does not exist: no runs yet (train one with `tinyllava train`), or give --dir")
    found = list_runs(root)
    if as_json:
        print(json.dumps([{
            "name": r.name, "path": str(r.path), "seconds": r.seconds, "final_loss": r.final_loss,
            "eval": r.eval_score, "eval_file": str(r.eval_file) if r.eval_file else None,
            "stages": [vars(s) for s in r.stages],
        } for r in found], indent=2))
        return 0
    if not found:
        console.print(f"no runs in {root}")
        return 0
    table = Table(title=f"runs in {root}")
    for col in ("run", "stages", "steps", "final loss", "wall time", "latest eval"):
        table.add_column(col, justify="right" if col in ("steps", "final loss", "wall time") else "left")
    for r in found:
        stages = ", ".join(s.name + ("" if s.finished else " (unfinished)") for s in r.stages)
        steps = " + ".join(str(s.steps) if s.steps is not None else "-" for s in r.stages)
        loss = f"{r.final_loss:.4f}" if r.final_loss is not None else "-"
        table.add_row(r.name, stages, steps, loss, _duration(r.seconds), r.eval_score or "-")
    console.print(table)
    return 0
