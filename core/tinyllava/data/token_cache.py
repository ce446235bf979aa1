"""Tokenise a stage's records once into flat int32 arrays, and keep them on disk keyed by content.

Samples are stored compact (one IMAGE_TOKEN_INDEX per image; the collator expands it to
`image_seq_len` positions) and already truncated. The key hashes everything the arrays depend on:
the records, the chat template (name, options and its code), the tokenizer's behaviour,
`image_seq_len`, `max_length` and this module's format, so any change there re-tokenises and an
unchanged stage, a later stage on the same data or a restarted run reuses the arrays.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyllava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX

FORMAT_VERSION = 1
ARRAYS = ("ids", "labels", "offsets", "lengths", "record_index", "has_image")


@dataclass
class TokenizedData:
    """Compact samples: sample i is ids[offsets[i]:offsets[i+1]]; lengths are the expanded lengths."""

    ids: np.ndarray  # int32, every sample concatenated
    labels: np.ndarray  # int32
    offsets: np.ndarray  # int64, n + 1
    lengths: np.ndarray  # int32, positions after image expansion
    record_index: np.ndarray  # int32, the record each sample came from
    has_image: np.ndarray  # bool, the image survived truncation
    truncated: int = 0
    untrainable: list[str] = field(default_factory=list)
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.lengths)


def _sha(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def records_digest(records: list[dict[str, Any]]) -> str:
    return _sha(json.dumps(records, sort_keys=True, ensure_ascii=False, default=str))


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """What decides how text becomes ids: the backend's full serialisation (normaliser, pre-tokeniser, model,
    added tokens, post-processor), else the vocabulary, plus the special tokens. Not the folder it was loaded
    from, nor init options that a save/load round trip rewrites (a later stage loads the same tokenizer from
    another checkpoint)."""
    parts: list[str] = [f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}"]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        parts.append(backend.to_str())
    else:
        parts.append(json.dumps(sorted(tokenizer.get_vocab().items())))
        model = getattr(tokenizer, "sp_model", None)
        if model is not None and hasattr(model, "serialized_model_proto"):
            parts.append(hashlib.sha256(model.serialized_model_proto()).hexdigest())
    parts.append(json.dumps(sorted((str(k), str(v)) for k, v in tokenizer.get_added_vocab().items())))
    for attr in ("bos_token", "eos_token", "pad_token", "unk_token", "add_bos_token", "add_eos_token"):
        parts.append(f"{attr}={str(getattr(tokenizer, attr, None))}")
    return _sha(*parts)


def template_fingerprint(template: Any, spec: dict[str, Any]) -> str:
    """Name and options, plus the source of the template's class (a plugin update that changes it counts)."""
    try:
        source = Path(inspect.getsourcefile(type(template)) or "").read_bytes()
    except (OSError, TypeError):
        source = f"{type(template).__module__}.{type(template).__qualname__}".encode()
    return _sha(json.dumps(spec, sort_keys=True, default=str), source)


def cache_key(records: list[dict[str, Any]], template: Any, template_spec: dict[str, Any], tokenizer: Any,
              image_seq_len: int, max_length: int) -> str:
    return _sha(
        f"format={FORMAT_VERSION}", records_digest(records), template_fingerprint(template, template_spec),
        tokenizer_fingerprint(tokenizer), f"image_seq_len={image_seq_len}", f"max_length={max_length}",
    )


def _truncate_compact(ids: list[int], labels: list[int], image_seq_len: int,
                      max_length: int) -> tuple[list[int], list[int], int, int]:
    """Cut so the expanded sample fits max_length, never inside an image span (a span that would be cut is
    dropped whole). Returns (ids, labels, expanded kept length, expanded full length)."""
    kept_ids: list[int] = []
    kept_labels: list[int] = []
    used = 0
    full = sum(image_seq_len if t == IMAGE_TOKEN_INDEX else 1 for t in ids)
    for tok, lab in zip(ids, labels, strict=True):
        width = image_seq_len if tok == IMAGE_TOKEN_INDEX else 1
        if used + width > max_length:
            break
        kept_ids.append(tok)
        kept_labels.append(lab)
        used += width
    return kept_ids, kept_labels, used, full


def tokenize_records(records: list[dict[str, Any]], template: Any, tokenizer: Any, image_seq_len: int,
                     max_length: int) -> TokenizedData:
    """Encode every record with the template (errors name the record), truncate, and pack into arrays."""
    ids_parts: list[np.ndarray] = []
    label_parts: list[np.ndarray] = []
    lengths: list[int] = []
    record_index: list[int] = []
    has_image: list[bool] = []
    truncated = 0
    untrainable: list[str] = []
    for r, record in enumerate(records):
        rid = str(record.get("id"))
        try:
            enc = template.encode(record["conversations"], tokenizer)
        except ValueError as exc:
            raise ValueError(f"record {rid}: {exc}") from None
        ids, labels, used, full = _truncate_compact(list(enc.input_ids), list(enc.labels), image_seq_len,
                                                    max_length)
        truncated += used < full
        if all(lab == IGNORE_INDEX for lab in labels):
            untrainable.append(rid)
            continue
        ids_parts.append(np.asarray(ids, dtype=np.int32))
        label_parts.append(np.asarray(labels, dtype=np.int32))
        lengths.append(used)
        record_index.append(r)
        has_image.append(record.get("image") is not None and IMAGE_TOKEN_INDEX in ids)
    sizes = np.array([len(p) for p in ids_parts], dtype=np.int64)
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    empty = np.zeros(0, dtype=np.int32)
    return TokenizedData(
        ids=np.concatenate(ids_parts) if ids_parts else empty,
        labels=np.concatenate(label_parts) if label_parts else empty,
        offsets=offsets,
        lengths=np.asarray(lengths, dtype=np.int32),
        record_index=np.asarray(record_index, dtype=np.int32),
        has_image=np.asarray(has_image, dtype=bool),
        truncated=truncated,
        untrainable=untrainable,
    )


def load(folder: Path, key: str) -> TokenizedData | None:
    path = Path(folder) / key
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        return None
    try:
        meta = json.loads(meta_file.read_text())
        if meta.get("key") != key or meta.get("format") != FORMAT_VERSION:
            return None
        arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
    except (OSError, ValueError):
        return None  # a damaged entry is rebuilt
    return TokenizedData(**arrays, truncated=meta["truncated"], untrainable=meta["untrainable"], from_cache=True)


def save(folder: Path, key: str, data: TokenizedData) -> None:
    """Write into a temporary folder, then rename: a reader never sees half an entry."""
    folder = Path(folder)
    final = folder / key
    if (final / "meta.json").is_file():
        return
    import shutil

    tmp = folder / f".{key}.{os.getpid()}.tmp"
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        for name in ARRAYS:
            np.save(tmp / f"{name}.npy", getattr(data, name))
        meta = {"key": key, "format": FORMAT_VERSION, "truncated": data.truncated, "untrainable": data.untrainable}
        (tmp / "meta.json").write_text(json.dumps(meta))
    except OSError as exc:  # a cache is optional: a full disk skips it (the samples are tokenised anyway)
        import logging

        logging.getLogger(__name__).warning("token cache: could not write %s (%s); going on without it", final,
                                            exc.strerror or exc)
        shutil.rmtree(tmp, ignore_errors=True)
        return
    try:
        os.replace(tmp, final)
    except OSError:  # another rank or run got there first
        shutil.rmtree(tmp, ignore_errors=True)


def load_or_tokenize(records: list[dict[str, Any]], template: Any, template_spec: dict[str, Any], tokenizer: Any,
                     image_seq_len: int, max_length: int, cache_dir: Path | None = None) -> TokenizedData:
    """The tokenised samples, from `cache_dir` when an entry with the same key is there, else built (and stored)."""
    if cache_dir is None:
        return tokenize_records(records, template, tokenizer, image_seq_len, max_length)
    key = cache_key(records, template, template_spec, tokenizer, image_seq_len, max_length)
    cached = load(cache_dir, key)
    if cached is not None:
        return cached
    data = tokenize_records(records, template, tokenizer, image_seq_len, max_length)
    save(cache_dir, key, data)
    return data
