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
from pathlib import Path

INDEX_VERSION = 1


class ImageIndex:
    """{absolute path: (size, mtime_ns, problem or None, sha256)}; `save` writes it atomically."""

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

    def _entry(self, path: Path) -> list | None:
        try:
            st = path.stat()
        except OSError:
            return None
        key = str(path.resolve())
        entry = self.entries.get(key)
        if entry is not None and entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
            return entry
        data = path.read_bytes()
        self.opened += 1
        entry = [st.st_size, st.st_mtime_ns, _verify(path, data), hashlib.sha256(data).hexdigest()]
        self.entries[key] = entry
        self._dirty = True
        return entry

    def problem(self, path: Path) -> str | None:
        """Why the image cannot be used (missing, unreadable), or None."""
        path = Path(path)
        if not path.is_file():
            return f"image {path} does not exist"
        entry = self._entry(path)
        if entry is None:
            return f"image {path} does not exist"
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


def _verify(path: Path, data: bytes) -> str | None:
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except Exception as exc:  # noqa: BLE001
        return f"image {path} is unreadable ({type(exc).__name__}: {exc})"
    return None
