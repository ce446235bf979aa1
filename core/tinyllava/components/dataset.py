"""Contract for dataset plugins: produce LLaVA-format data on disk, so every source takes one path."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import ClassVar

from tinyllava.components.base import Component


class Dataset(Component):
    kind: ClassVar[str] = "dataset"

    @abstractmethod
    def materialize(self, cache_root: Path) -> tuple[Path, Path]:
        """Write (or reuse) the data under cache_root; return (LLaVA JSON path, image root)."""
