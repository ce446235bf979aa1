"""Tally for fuzz tests: every generated case ends as `ok`, `clean error`, `traceback` or `silent drop`.

A fuzz test calls `tally.run(family, case)` with a function that returns normally when the input was accepted
and handled correctly (it checks that itself), or raises. `expected` error types whose message is one line (or one
line per listed problem) count as clean; anything else counts as a traceback, with the first few kept for the
assertion message. A case that was accepted but produced nothing and reported nothing is recorded by the test as
`silent drop`. `table()` prints the summary; `write_json()` leaves the counts for the notes.
"""

from __future__ import annotations

import json
import os
import tempfile
import traceback
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

OUTCOMES = ("ok", "clean error", "traceback", "silent drop")


def report_dir() -> Path:
    """Where fuzz and kill tests leave their counts: $TINYLLAVA_FUZZ_REPORT_DIR, else the temp folder."""
    folder = Path(os.environ.get("TINYLLAVA_FUZZ_REPORT_DIR") or tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class FuzzTally:
    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(OUTCOMES, 0))
        self.failures: list[str] = []

    def add(self, family: str, outcome: str, detail: str = "") -> None:
        self.counts[family][outcome] += 1
        if outcome in ("traceback", "silent drop") and len(self.failures) < 20:
            self.failures.append(f"[{family}] {outcome}: {detail}")

    def run(self, family: str, case: Callable[[], Any], expected: tuple[type[BaseException], ...],
            must_mention: tuple[str, ...] = (), label: str = "") -> str:
        """Run one case; returns its outcome. A clean error must mention each of `must_mention`."""
        try:
            case()
        except expected as exc:
            message = str(exc)
            lines = [line for line in message.strip().splitlines() if line.strip()]
            missing = [m for m in must_mention if m not in message]
            if not lines or missing or (len(lines) > 1 and not all(
                    line.startswith(("  - ", "  ...")) for line in lines[1:-1])):
                self.add(family, "traceback", f"{label}: unclear message {message[:300]!r} (missing {missing})")
                return "traceback"
            self.add(family, "clean error")
            return "clean error"
        except Exception as exc:  # noqa: BLE001 - this is what the tally is for
            tb = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            self.add(family, "traceback", f"{label}: {tb[:300]}")
            return "traceback"
        self.add(family, "ok")
        return "ok"

    def total(self, outcome: str | None = None) -> int:
        return sum(c[o] for c in self.counts.values() for o in OUTCOMES if outcome in (None, o))

    def table(self) -> str:
        width = max([len(f) for f in self.counts] + [len("family"), len("total")])
        head = f"{'family':<{width}}  {'cases':>6}  " + "  ".join(f"{o:>11}" for o in OUTCOMES)
        rows = [head, "-" * len(head)]
        for family, c in sorted(self.counts.items()):
            rows.append(f"{family:<{width}}  {sum(c.values()):>6}  " + "  ".join(f"{c[o]:>11}" for o in OUTCOMES))
        rows.append("-" * len(head))
        rows.append(f"{'total':<{width}}  {self.total():>6}  " + "  ".join(f"{self.total(o):>11}" for o in OUTCOMES))
        return "\n".join(rows)

    def write_json(self, directory: Path | None = None) -> Path:
        """Counts as JSON (in $TINYLLAVA_FUZZ_REPORT_DIR, else the temp folder): fuzz-<name>.json."""
        folder = Path(directory) if directory else report_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"fuzz-{self.name}.json"
        path.write_text(json.dumps({"name": self.name, "families": self.counts, "failures": self.failures,
                                    "total": {o: self.total(o) for o in OUTCOMES} | {"cases": self.total()}},
                                   indent=2))
        return path

    def report(self) -> str:
        path = self.write_json()
        text = f"\n{self.name}: cases per family and outcome\n{self.table()}\n(counts in {path})"
        print(text)
        return text


def summary(folder: Path | None = None) -> str:
    """One table from what the fuzz and kill tests left in `folder` (see report_dir)."""
    folder = Path(folder) if folder else report_dir()
    rows = [f"{'family':<34} {'cases':>6} {'ok':>6} {'clean error':>12} {'traceback':>10} {'silent drop':>12}"]
    for file in sorted(folder.glob("fuzz-*.json")):
        data = json.loads(file.read_text())
        for family, c in sorted(data["families"].items()):
            rows.append(f"{data['name'] + ': ' + family:<34} {sum(c.values()):>6} {c['ok']:>6} {c['clean error']:>12} "
                        f"{c['traceback']:>10} {c['silent drop']:>12}")
    kills = folder / "reliability-save-kills.json"
    if kills.is_file():
        data = json.loads(kills.read_text())
        rows.append(f"SIGKILL while saving: {data['kill_points_tried']} kill points, each left the last checkpoint "
                    f"loadable; {data['resumes_identical']} distinct on-disk states resumed, all identical")
    steps = folder / "reliability-step-kills.json"
    if steps.is_file():
        data = json.loads(steps.read_text())
        rows.append(f"SIGKILL while training (2 stages, LoRA then full): {len(data['kills'])} kills "
                    f"({', '.join(data['kills'])}); both stages' weights identical to the uninterrupted run")
    return "\n".join(rows)


if __name__ == "__main__":
    print(summary())
