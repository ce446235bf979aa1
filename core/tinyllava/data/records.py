"""Read a LLaVA-format JSON file and check every record before training starts.

Each problem names the record id and the reason; nothing is dropped silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyllava.constants import IMAGE_PLACEHOLDER
from tinyllava.data.image_index import ImageIndex


@dataclass
class RecordProblem:
    record_id: str
    reason: str

    def __str__(self) -> str:
        return f"record {self.record_id}: {self.reason}"


@dataclass
class CheckedData:
    records: list[dict[str, Any]]
    problems: list[RecordProblem] = field(default_factory=list)
    source: str = ""


class DataError(ValueError):
    """Bad training data; the message lists the bad records (first few) and how to proceed."""


def _check_image(path: Path, images: ImageIndex | None = None) -> str | None:
    return (images or ImageIndex()).problem(path)


def check_record(
    index: int, record: Any, image_root: Path | None, images: ImageIndex | None = None
) -> tuple[str, str | None]:
    """(record id, problem or None). `images` remembers image checks across stages and restarts."""
    if not isinstance(record, dict):
        return f"#{index}", f"is a {type(record).__name__}, not an object"
    rid = str(record.get("id", f"#{index}"))
    convs = record.get("conversations")
    if not isinstance(convs, list) or not convs:
        return rid, "'conversations' must be a non-empty list"
    for t, turn in enumerate(convs):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            return rid, f"turn {t} must be an object with 'from' and 'value'"
        if turn["from"] not in ("human", "gpt"):
            return rid, f"turn {t}: 'from' is {turn['from']!r}; expected 'human' or 'gpt'"
        if not isinstance(turn["value"], str):
            return rid, f"turn {t}: 'value' must be a string"
        expected = "human" if t % 2 == 0 else "gpt"
        if turn["from"] != expected:
            return rid, f"turn {t}: expected {expected!r} (turns alternate, starting with human)"
        if turn["from"] == "gpt" and IMAGE_PLACEHOLDER in turn["value"]:
            return rid, f"turn {t}: {IMAGE_PLACEHOLDER} appears in a gpt turn"
    if convs[-1]["from"] != "gpt":
        return rid, "the last turn must be a gpt answer"
    n_tags = sum(turn["value"].count(IMAGE_PLACEHOLDER) for turn in convs)
    image = record.get("image")
    if image is None:
        if n_tags:
            return rid, f"{n_tags} {IMAGE_PLACEHOLDER} tag(s) but no 'image' field"
        return rid, None
    if not isinstance(image, str):
        return rid, "'image' must be a path string (one image per sample)"
    if n_tags != 1:
        return rid, f"has an image but {n_tags} {IMAGE_PLACEHOLDER} tags; put exactly one in a human turn"
    if image_root is None:
        return rid, "has an image but no image_root was given"
    return rid, _check_image(image_root / image, images)


def load_records(
    json_path: Path, image_root: Path | None, on_bad_record: str = "stop", images: ImageIndex | None = None
) -> CheckedData:
    """Parse and check every record; `images` (an ImageIndex) skips re-opening unchanged image files."""
    json_path = Path(json_path)
    if not json_path.is_file():
        raise DataError(f"data file {json_path} does not exist")
    try:
        raw = json.loads(json_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{json_path} is not valid JSON: {exc}") from None
    if not isinstance(raw, list):
        raise DataError(f"{json_path}: the top level must be a list of records")
    good: list[dict[str, Any]] = []
    problems: list[RecordProblem] = []
    seen: set[str] = set()
    for i, record in enumerate(raw):
        rid, problem = check_record(i, record, image_root, images)
        if problem is None and rid in seen:
            problem = "duplicate id"
        seen.add(rid)
        if problem is None:
            good.append(record)
        else:
            problems.append(RecordProblem(rid, problem))
    if problems and on_bad_record == "stop":
        shown = "\n".join(f"  - {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DataError(
            f"{json_path}: {len(problems)} of {len(raw)} records are bad:\n{shown}{more}\n"
            "Fix them, or set `on_bad_record: skip` in the stage's data to train without them."
        )
    if images is not None:
        images.save()
    if not good:
        raise DataError(f"{json_path}: no usable records")
    return CheckedData(good, problems, str(json_path))
