"""benchmarks/chunked_rate.py: every item answered once, in order of chunks of whole batches, best chunk rate."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "chunked_rate.py"


def chunked_rate():
    spec = importlib.util.spec_from_file_location("chunked_rate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["chunked_rate"] = module
    spec.loader.exec_module(module)
    return module


def test_chunks_are_whole_batches_and_the_best_rate_is_the_fastest_full_chunk():
    cr = chunked_rate()
    parts: list[list[int]] = []
    took: list[float] = []

    def answer(part):
        parts.append(list(part))
        began = time.perf_counter()
        time.sleep(0.0005 * len(part) * (20 if len(parts) == 1 else 1))  # the first chunk runs 20x slower
        took.append(time.perf_counter() - began)
        return {str(i): f"a{i}" for i in part}

    items = list(range(130))
    answers, seconds, best = cr.timed_answers(items, 16, answer)
    assert [len(p) for p in parts] == [48, 48, 34]  # 50 // 16 * 16 = 48: whole batches only
    assert answers == {str(i): f"a{i}" for i in items}
    assert seconds >= 0.0005 * (130 + 19 * 48)
    # a full chunk's rate, and not the slow first one's (measured, so a busy machine's late wake-ups count on both)
    assert 48 / took[0] < best <= 1 / 0.0005
    _, _, single = cr.timed_answers(items[:10], 64, answer)  # no full chunk: the overall rate
    assert 0 < single <= 10 / (0.0005 * 10)
