"""Shared helpers for benchmark plugins: read native files, fail early with a layout message, write answers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyllava.components.benchmark import DataLayoutError, EvalItem

SHORT_ANSWER = "Answer the question using a single word or phrase."


@dataclass(frozen=True)
class Layout:
    """What a benchmark's data folder must hold, so every layout error can say what is expected and where
    the data comes from."""

    benchmark: str
    tree: str
    source: str
    subdir: str = ""  # the benchmark's folder inside LLaVA's playground/data/eval
    marker: str = ""  # a file that only the benchmark's own folder holds

    def error(self, problem: str) -> DataLayoutError:
        where = f" (or an eval root holding {self.subdir}/)" if self.subdir else ""
        return DataLayoutError(
            f"{self.benchmark}: {problem}\n"
            f"Expected layout of the data folder (--data){where}:\n{self.tree}\n"
            f"Where to get it: {self.source}"
        )

    def root(self, data_dir: Path | str | None) -> Path:
        """The benchmark folder; an eval root holding `<subdir>/` (LLaVA's layout) is accepted too."""
        if data_dir is None:
            raise self.error("no data folder was given")
        root = Path(data_dir).expanduser().resolve()
        if not root.is_dir():
            raise self.error(f"the data folder {root} does not exist")
        nested = root / self.subdir
        if (
            self.subdir
            and self.marker
            and not (root / self.marker).exists()
            and (nested / self.marker).exists()
        ):
            return nested
        return root

    def file(self, root: Path, *candidates: str) -> Path:
        """The first candidate that is a file (candidates cover the LLaVA and TinyLLaVA layouts)."""
        for rel in candidates:
            if (root / rel).is_file():
                return root / rel
        raise self.error(f"missing file {candidates[0]} in {root}" + _alternatives(candidates))

    def folder(self, root: Path, *candidates: str) -> Path:
        for rel in candidates:
            if (root / rel).is_dir():
                return root / rel
        raise self.error(f"missing folder {candidates[0]}/ in {root}" + _alternatives(candidates))


def _alternatives(candidates: tuple[str, ...]) -> str:
    return f" (also looked for: {', '.join(candidates[1:])})" if len(candidates) > 1 else ""


def check_images(items: list[EvalItem], layout: Layout) -> list[EvalItem]:
    """Every image must exist before generation starts, not fail half-way through a long run."""
    missing = [it for it in items if it.image is not None and not Path(it.image).is_file()]
    if missing:
        first = missing[0]
        raise layout.error(
            f"{len(missing)} of {len(items)} images are missing, e.g. {first.image} (item {first.item_id})"
        )
    return items


def read_json(path: Path, layout: Layout) -> Any:
    try:
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise layout.error(f"{path} is not valid JSON: {exc}") from exc


def read_jsonl(path: Path, layout: Layout) -> list[dict[str, Any]]:
    """One JSON object per non-empty line; a broken line is an error naming the line, never skipped."""
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise layout.error(f"{path}:{lineno} is not valid JSON: {exc}") from exc
    return rows


def with_suffix(text: str, suffix: str) -> str:
    """Add the answer-format line unless the native question text already ends with it."""
    if text.rstrip().endswith(suffix):
        return text
    return f"{text}\n{suffix}"


def apply_limit(rows: list[Any], limit: int | None) -> list[Any]:
    return rows if limit is None else rows[: max(limit, 0)]


def short_answer_item(item_id: str, question_id: Any, text: str, image: Path, **meta: Any) -> EvalItem:
    """An item of a LLaVA short-answer benchmark, prompted like LLaVA's model_vqa_loader: the native question
    text plus SHORT_ANSWER, up to 128 new tokens. `meta` keeps the native question id and text, which the
    answers file repeats, plus what the benchmark scores with."""
    return EvalItem(
        item_id=item_id,
        prompt=with_suffix(text, SHORT_ANSWER),
        image=image,
        max_new_tokens=128,
        meta={"question_id": question_id, "question_text": text, **meta},
    )


def question_text(item: EvalItem) -> str:
    """The native question text a `short_answer_item` keeps: the prompt LLaVA's answers files record."""
    return item.meta["question_text"]


def require_answers(items: list[EvalItem], answers: dict[str, str], problem: str, reason: str) -> None:
    """Refuse to score unless every item has an answer, where the official scorer pairs or needs them all.

    The error reads `<problem> <count> question(s) (first: <ids>); <reason>`.
    """
    missing = [it.item_id for it in items if it.item_id not in answers]
    if missing:
        raise ValueError(f"{problem} {len(missing)} question(s) (first: {', '.join(missing[:5])}); {reason}")


def answer_id(benchmark: str, item_id: str) -> str:
    """Stable stand-in for LLaVA's random shortuuid, so two runs write identical files."""
    return hashlib.sha1(f"{benchmark}:{item_id}".encode()).hexdigest()[:22]


def write_llava_answers(
    path: Path,
    benchmark: str,
    items: list[EvalItem],
    answers: dict[str, str],
    prompt_of: Callable[[EvalItem], str] = question_text,
) -> Path:
    """The answers .jsonl of LLaVA's model_vqa scripts, one line per answered item, in item order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for item in items:
            if item.item_id not in answers:
                continue
            record = {
                "question_id": item.meta.get("question_id", item.item_id),
                "prompt": prompt_of(item),
                "text": answers[item.item_id],
                "answer_id": answer_id(benchmark, item.item_id),
                "model_id": None,
                "metadata": {},
            }
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False)
    return path
