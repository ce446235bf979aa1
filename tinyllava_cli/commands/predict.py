"""`tinyllava predict`: answer a JSONL file of questions in batches."""

from __future__ import annotations

import json
from pathlib import Path

from tinyllava_cli.commands.common import check_placement, console, fail, load_pipeline


def read_questions(path: Path, image_root: Path | None) -> list[dict]:
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not valid JSON ({exc})") from None
        if "question" not in row:
            raise ValueError(f"{path}:{n}: missing 'question'")
        row.setdefault("id", str(n))
        if row.get("image"):
            image = Path(row["image"])
            image = image if image.is_absolute() or image_root is None else image_root / image
            if not image.is_file():
                raise ValueError(f"{path}:{n} (id {row['id']}): image {image} does not exist")
            row["image"] = image
        rows.append(row)
    return rows


def predict(model: Path, input_path: Path, output: Path, batch_size: int, max_new_tokens: int,
            image_root: Path | None, device: str = "auto", dtype: str = "auto") -> int:
    from tinyllava.components.benchmark import EvalItem
    from tinyllava.eval.runner import generate_answers

    problem = check_placement(device, dtype)
    if problem:
        return fail(problem)
    if batch_size < 1:
        return fail(f"--batch-size {batch_size}: give at least 1")
    try:
        rows = read_questions(Path(input_path), image_root)
    except (OSError, ValueError) as exc:
        return fail(str(exc))
    pipeline, problem = load_pipeline(model, device, dtype)
    if problem:
        return fail(problem)
    items = [EvalItem(str(r["id"]), r["question"], r.get("image"), max_new_tokens) for r in rows]
    answers = generate_answers(pipeline, items, batch_size, console)
    with Path(output).open("w") as fh:
        for r in rows:
            fh.write(json.dumps({"id": r["id"], "question": r["question"], "answer": answers[str(r["id"])]}) + "\n")
    console.print(f"wrote {len(rows)} answers to {output}")
    return 0
