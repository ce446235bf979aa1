"""`tinyllava predict`: answer a JSONL file of questions in batches.

A bad line (not JSON, no question, an image that is missing or cannot be decoded) is reported with its line
number and id. `--on-bad-line skip` answers every other line and writes `{"id", "error"}` for the bad ones;
`stop` (the default) answers the lines before the first bad one, writes them, and exits with an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyllava_cli.commands.common import console, early_problem, err_console, fail, image_problem

ON_BAD_LINE = ("stop", "skip")


@dataclass
class Questions:
    rows: list[dict[str, Any]] = field(default_factory=list)      # good lines, in file order
    bad: list[dict[str, Any]] = field(default_factory=list)       # {"line", "id", "error"}, in file order


def read_questions(path: Path, image_root: Path | None) -> Questions:
    """Every line checked (images decoded), so each problem is reported, not only the first."""
    found = Questions()
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        row, problem = _check_line(path, n, line, image_root)
        if problem is None:
            row["line"] = n
            found.rows.append(row)
        else:
            found.bad.append({"line": n, "id": row.get("id") if isinstance(row, dict) else None, "error": problem})
    return found


def _check_line(path: Path, n: int, line: str, image_root: Path | None) -> tuple[dict[str, Any], str | None]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        return {}, f"{path}:{n}: not valid JSON ({exc})"
    if not isinstance(row, dict):
        return {}, f"{path}:{n}: expected an object {{id, question, image?}}"
    row.setdefault("id", str(n))
    if "question" not in row:
        return row, f"{path}:{n} (id {row['id']}): missing 'question'"
    if row.get("image"):
        image = Path(row["image"])
        image = image if image.is_absolute() or image_root is None else image_root / image
        problem = image_problem(image)
        if problem:
            return row, f"{path}:{n} (id {row['id']}): {problem}"
        row["image"] = image
    return row, None


def predict(model: Path, input_path: Path, output: Path, batch_size: int, max_new_tokens: int,
            image_root: Path | None, device: str = "auto", dtype: str = "auto", on_bad_line: str = "stop") -> int:
    problem = early_problem(model, device, dtype)  # before torch: a misspelt flag or path is answered at once
    if problem:
        return fail(problem)
    if on_bad_line not in ON_BAD_LINE:
        return fail(f"--on-bad-line {on_bad_line!r}: use stop or skip")
    if batch_size < 1:
        return fail(f"--batch-size {batch_size}: give at least 1")
    try:
        questions = read_questions(Path(input_path), image_root)
    except OSError as exc:
        return fail(f"{input_path}: {exc}")
    for bad in questions.bad:
        err_console.print(f"[bold red]bad line:[/] {bad['error']}", highlight=False)
    rows = questions.rows
    if questions.bad and on_bad_line == "stop":
        first = questions.bad[0]["line"]
        rows = [r for r in rows if r["line"] < first]
    answers = _answer(model, rows, batch_size, max_new_tokens, device, dtype) if rows else {}
    if isinstance(answers, int):
        return answers
    written = _write(Path(output), rows, answers, questions.bad if on_bad_line == "skip" else [])
    console.print(f"wrote {len(rows)} answers to {output}" + (f" ({written - len(rows)} bad line(s) as errors)"
                                                               if written > len(rows) else ""))
    if questions.bad and on_bad_line == "stop":
        return fail(f"stopped at line {questions.bad[0]['line']} ({len(questions.bad)} bad line(s)); the "
                    f"{len(rows)} line(s) before it were answered; --on-bad-line skip answers the rest too")
    return 0


def _answer(model: Path, rows: list[dict[str, Any]], batch_size: int, max_new_tokens: int, device: str,
            dtype: str) -> dict[str, str] | int:
    from tinyllava.components.benchmark import EvalItem
    from tinyllava.eval.runner import generate_answers
    from tinyllava_cli.commands.common import load_pipeline

    pipeline, problem = load_pipeline(model, device, dtype)
    if problem:
        return fail(problem)
    items = [EvalItem(str(r["line"]), r["question"], r.get("image"), max_new_tokens) for r in rows]
    return generate_answers(pipeline, items, batch_size, console)


def _write(output: Path, rows: list[dict[str, Any]], answers: dict[str, str], bad: list[dict[str, Any]]) -> int:
    """Answers and (skip) errors in the input's line order; returns the number of lines written."""
    lines = [(r["line"], {"id": r["id"], "question": r["question"], "answer": answers[str(r["line"])]})
             for r in rows]
    lines += [(b["line"], {"id": b["id"], "error": b["error"]}) for b in bad]
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w") as fh:
        for _, record in sorted(lines, key=lambda x: x[0]):
            fh.write(json.dumps(record) + "\n")
    return len(lines)
