"""What is known about each image file, remembered by (size, mtime) so a stage or rank never re-opens it.

Checking every image (open + verify) each stage and on every rank costs seconds on large data; the
answer only changes when the file does. The index also keeps a content digest of each file, which the
frozen-tower feature cache uses as the image part of its key.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

INDEX_VERSION = 2  # 2: entries also hold the image size (width, height)


class ImageIndex:
    """{absolute path: (size, mtime_ns, problem or None, sha256, width, height)}; `save` writes it atomically."""

    def __init__(self, file: Path | None = None) -> None:
        self.file = Path(file) if file is not None else None
        self.entries: dict[str, list] = {}
        self.opened = 0  # files actually opened by this instance (the rest came from the index)
        self._dirty = False
        if self.file is not None and self.file.is_file():
            try:
                raw = json.loads(self.file.read_text())
                if raw.get("version") == INDEX_VERSION:
                    self.entries = raw["entries"]
            except (OSError, ValueError, KeyError, AttributeError):
                self.entries = {}  # a damaged index is rebuilt, never trusted

    def _current(self, path: Path) -> tuple[os.stat_result | None, str, list | None]:
        """(stat or None if missing, index key, the index's entry if the file is unchanged since)."""
        try:
            st = path.stat()
        except OSError:
            return None, "", None
        key = str(path.resolve())
        entry = self.entries.get(key)
        if entry is not None and entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
            return st, key, entry
        return st, key, None

    def _entry(self, path: Path) -> list | None:
        st, key, entry = self._current(path)
        if st is None or entry is not None:
            return entry
        entry, opened = _examine(path, st)
        self._store(key, entry, opened)
        return entry

    def _store(self, key: str, entry: list, opened: bool) -> None:
        self.opened += opened
        if opened:  # an unreadable file is reported, not remembered: it may be readable next time
            self.entries[key] = entry
            self._dirty = True

    def prefetch(self, paths: Iterable[Path], workers: int | None = None) -> None:
        """Check, on a thread pool, the files among `paths` the index does not know (or that changed), so the
        `problem` calls that follow find them known. Decoding (Pillow) and hashing (hashlib) release the GIL, so a
        first run over thousands of images takes about 1/cores of the time; missing files are left to `problem`."""
        todo: dict[str, tuple[Path, os.stat_result]] = {}
        for path in paths:
            st, key, entry = self._current(Path(path))
            if st is not None and entry is None and key not in todo and stat.S_ISREG(st.st_mode):
                todo[key] = (Path(path), st)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = workers or min(8, cores)
        if len(todo) < 2 or workers < 2:
            return
        with ThreadPoolExecutor(workers, thread_name_prefix="image-check") as pool:
            results = list(pool.map(lambda item: _examine(*item), todo.values()))
        for key, (entry, opened) in zip(todo, results, strict=True):
            self._store(key, entry, opened)

    def problem(self, path: Path, max_pixels: int | None = None) -> str | None:
        """Why the image cannot be used (missing, unreadable, more than `max_pixels` pixels), or None."""
        path = Path(path)
        if not path.is_file():
            return f"image {path} does not exist" if not path.is_dir() else f"image {path} is a directory"
        entry = self._entry(path)
        if entry is None:
            return f"image {path} does not exist"
        if entry[2] is None and max_pixels is not None and entry[4] * entry[5] > max_pixels:
            return (f"image {path} is {entry[4]}x{entry[5]} = {entry[4] * entry[5]:,} pixels, more than "
                    f"max_image_pixels={max_pixels:,} (a decompression bomb?); shrink it or raise the limit")
        return entry[2]

    def digest(self, path: Path) -> str:
        """sha256 of the file's bytes."""
        entry = self._entry(Path(path))
        if entry is None:
            raise FileNotFoundError(path)
        return entry[3]

    def save(self) -> None:
        if self.file is None or not self._dirty:
            return
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_name(f"{self.file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": INDEX_VERSION, "entries": self.entries}))
        os.replace(tmp, self.file)
        self._dirty = False


def _examine(path: Path, st: os.stat_result) -> tuple[list, bool]:
    """(index entry, whether the file could be read). Touches no index state: safe on any thread."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return [st.st_size, st.st_mtime_ns, f"image {path} cannot be read ({exc.strerror or exc})", "", 0, 0], False
    problem, width, height = _verify(path, data)
    return [st.st_size, st.st_mtime_ns, problem, hashlib.sha256(data).hexdigest(), width, height], True


def _verify(path: Path, data: bytes) -> tuple[str | None, int, int]:
    """(problem or None, width, height). The image is decoded in full, as training will decode it, so a truncated
    file is caught here rather than mid-run; one larger than `DECODE_LIMIT` is not decoded at all."""
    from tinyllava.data.images import DECODE_LIMIT, open_image

    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > DECODE_LIMIT:  # never decoded, whatever the run's max_image_pixels
                return (f"image {path} is {width}x{height} pixels, too many to decode (a decompression bomb?)",
                        width, height)
            img.verify()
        open_image(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - any decoder failure makes the file unusable, with its reason
        reason = " ".join(re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "(the file's bytes)", str(exc)).split())[:200]
        return f"image {path} is unreadable ({type(exc).__name__}: {reason})", 0, 0
    return None, width, height
