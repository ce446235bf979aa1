"""Answers/s timed in chunks of whole batches, shared by our inference benchmark and the original's harness
(`original/run_inference.py`, which runs in the original's venv: so plain Python, no tinyllava import).

The overall rate is what a run took; the best chunk (at least 50 questions) estimates the speed on a quiet
machine, since a busy neighbour slows some chunks and not others.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

MIN_CHUNK = 50


def timed_answers(items: Sequence[Any], batch_size: int, answer: Callable[[Sequence[Any]], dict[str, str]]
                  ) -> tuple[dict[str, str], float, float]:
    """(answers, seconds for all, best chunk's answers/s); `answer(part)` answers a slice of `items`."""
    chunk = max(batch_size, MIN_CHUNK // batch_size * batch_size)
    answers: dict[str, str] = {}
    rates = []
    started = time.perf_counter()
    for start in range(0, len(items), chunk):
        part = items[start:start + chunk]
        began = time.perf_counter()
        answers.update(answer(part))
        if len(part) == chunk:
            rates.append(len(part) / (time.perf_counter() - began))
    seconds = time.perf_counter() - started
    return answers, seconds, max(rates, default=len(answers) / seconds if seconds else 0.0)
