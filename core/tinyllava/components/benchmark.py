"""Contract for benchmarks: read the benchmark's own files, build prompts, score like the official tool."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tinyllava.components.base import Component


@dataclass
class EvalItem:
    """One question. `image` is a path, a PIL image, or None for text-only questions."""

    item_id: str
    prompt: str
    image: Any = None
    max_new_tokens: int = 128
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScoreTable:
    title: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass
class BenchmarkResult:
    """Every metric (flat, JSON-serialisable) plus tables for the terminal."""

    metrics: dict[str, Any]
    tables: list[ScoreTable] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


class DataLayoutError(FileNotFoundError):
    """The benchmark's data folder is missing files; the message says what and where to get them."""


class Benchmark(Component):
    kind: ClassVar[str] = "benchmark"

    @abstractmethod
    def load_items(self, data_dir: Path | None, limit: int | None = None) -> list[EvalItem]:
        """The questions, read from the benchmark's own files under `data_dir` (None: the benchmark's default
        place, or data it generates); at most `limit` of them. Raise DataLayoutError naming missing files."""

    def write_answers(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> list[Path]:
        """Write the answers in the format the official tools read; return the files written."""
        return []

    @abstractmethod
    def score(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> BenchmarkResult:
        """Score `answers` ({item_id: generated text}) as the official tool does; may write files to out_dir."""
