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


def _check_image(path: Path, images: ImageIndex | None = None, max_pixels: int | None = None) -> str | None:
    return (images or ImageIndex()).problem(path, max_pixels=max_pixels)


def _show(value: Any, limit: int = 60) -> str:
    """A value for a one-line message: repr'd (newlines and control characters escaped), long ones cut."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def record_id(index: int, record: Any) -> str:
    """The id a message names: the record's own (a string or an integer), else its position `#index`."""
    rid = record.get("id") if isinstance(record, dict) else None
    if isinstance(rid, bool) or not isinstance(rid, str | int) or rid == "":
        return f"#{index}"
    text = str(rid)
    return text if text.isprintable() and len(text) <= 80 else _show(text, 80)


def check_record(
    index: int, record: Any, image_root: Path | None, images: ImageIndex | None = None,
    max_pixels: int | None = None,
) -> tuple[str, str | None]:
    """(record id, problem or None). A problem starts with the field it is about (`conversations[1].from: ...`).

    `images` remembers image checks across stages and restarts; `max_pixels` refuses larger images (decompression
    bombs) before they are decoded.
    """
    if not isinstance(record, dict):
        return f"#{index}", f"(record): is a {type(record).__name__}, not an object"
    rid = record_id(index, record)
    if "id" in record and (isinstance(record["id"], bool) or not isinstance(record["id"], str | int)):
        return rid, f"id: must be a string or an integer, not {type(record['id']).__name__}"
    if record.get("id") == "":
        return rid, "id: must not be empty"
    convs = record.get("conversations")
    if not isinstance(convs, list) or not convs:
        found = "missing" if "conversations" not in record else _show(convs)
        return rid, f"conversations: must be a non-empty list of turns (found {found})"
    for t, turn in enumerate(convs):
        where = f"conversations[{t}]"
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            return rid, f"{where}: each turn must be an object with 'from' and 'value'"
        if turn["from"] not in ("human", "gpt"):
            return rid, f"{where}.from: 'from' is {_show(turn['from'])}; expected 'human' or 'gpt'"
        if not isinstance(turn["value"], str):
            return rid, f"{where}.value: must be a string, not {type(turn['value']).__name__}"
        expected = "human" if t % 2 == 0 else "gpt"
        if turn["from"] != expected:
            return rid, f"{where}.from: expected {expected!r} (turns alternate, starting with human)"
        if turn["from"] == "gpt" and IMAGE_PLACEHOLDER in turn["value"]:
            return rid, f"{where}.value: {IMAGE_PLACEHOLDER} appears in a gpt turn"
    if convs[-1]["from"] != "gpt":
        return rid, f"conversations[{len(convs) - 1}].from: the last turn must be a gpt answer"
    n_tags = sum(turn["value"].count(IMAGE_PLACEHOLDER) for turn in convs)
    image = record.get("image")
    if image is None:
        if n_tags:
            return rid, f"image: {n_tags} {IMAGE_PLACEHOLDER} tag(s) in the conversation but no 'image' field"
        return rid, None
    if not isinstance(image, str) or not image.strip():
        return rid, f"image: must be a non-empty path string, one image per sample (found {_show(image)})"
    if n_tags != 1:
        return rid, (f"conversations: has an image but {n_tags} {IMAGE_PLACEHOLDER} tags; put exactly one in a "
                     f"human turn")
    if image_root is None:
        return rid, "image: has an image but no image_root was given"
    problem = _check_image(image_root / image, images, max_pixels)
    return rid, None if problem is None else f"image: {problem}"


def read_raw(json_path: Path) -> list[tuple[str | None, Any]]:
    """The file's records as (line tag or None, record): a JSON list, or JSON Lines (`.jsonl`, or any file whose
    text is one JSON value per line). A JSONL line that is not valid JSON comes back as (line tag, DataError)."""
    json_path = Path(json_path)
    if not json_path.is_file():
        raise DataError(f"data file {json_path} does not exist")
    try:
        text = json_path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{json_path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8") from None
    except OSError as exc:
        raise DataError(f"{json_path} cannot be read: {exc.strerror or exc}") from None
    if json_path.suffix != ".jsonl":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            if not (exc.msg == "Extra data" and text.lstrip().startswith("{")):
                raise DataError(f"{json_path} is not valid JSON: {exc}") from None
        else:
            if not isinstance(raw, list):
                raise DataError(f"{json_path}: the top level must be a list of records, not {type(raw).__name__} "
                                f"(or give JSON Lines: one record per line, in a .jsonl file)")
            return [(None, r) for r in raw]
    out: list[tuple[str | None, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((f"line {number}", json.loads(line)))
        except json.JSONDecodeError as exc:
            out.append((f"line {number}", DataError(f"(line): not valid JSON ({exc.msg}, column {exc.colno})")))
    return out


def load_records(
    json_path: Path, image_root: Path | None, on_bad_record: str = "stop", images: ImageIndex | None = None,
    max_pixels: int | None = None,
) -> CheckedData:
    """Parse and check every record; `images` (an ImageIndex) skips re-opening unchanged image files.

    Every record ends up either in `records` or in `problems` (its id and the field at fault): none is dropped
    silently. Records of a JSON Lines file without an id are named by their line.
    """
    json_path = Path(json_path)
    raw = read_raw(json_path)
    good: list[dict[str, Any]] = []
    problems: list[RecordProblem] = []
    seen: set[str] = set()
    if images is not None and image_root is not None:  # the new images are checked in parallel, up front
        images.prefetch(image_root / r["image"] for _, r in raw
                        if isinstance(r, dict) and isinstance(r.get("image"), str) and r["image"].strip())
    for i, (line, record) in enumerate(raw):
        if isinstance(record, DataError):
            problems.append(RecordProblem(str(line), str(record)))
            continue
        rid, problem = check_record(i, record, image_root, images, max_pixels)
        if line is not None and rid.startswith("#"):
            rid = line
        key = str(record["id"]) if isinstance(record, dict) and "id" in record else None
        if problem is None and key is not None and key in seen:  # the id itself, not its (shortened) display
            problem = "id: duplicate id (ids must be unique)"
        if key is not None:
            seen.add(key)
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
        first = f" (first: {problems[0]})" if problems else ""
        raise DataError(f"{json_path}: no usable records{first}")
    return CheckedData(good, problems, str(json_path))
