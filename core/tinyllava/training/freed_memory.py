"""Keep the memory a training step frees inside the process, instead of giving it back to the OS after every op.

PyTorch's CPU tensors come from malloc. glibc serves a block above its mmap threshold (128 KiB, raised on the
fly up to 32 MiB) with a fresh mmap, and gives the top of its heap back to the OS whenever more than the trim
threshold is free there. A training step allocates and frees the same activation tensors (a few MB each at
tinyllava's sizes) step after step, so each comes back as new pages that the kernel faults in and zeroes: on
the reference workload ~7,000 page faults a step and 10-18% of the step's CPU time, most of what a profile
shows as slow `mul`, `fill_` and `cat`. Inside `keep_freed_memory()` both thresholds are raised, so freed
blocks are reused as they are; the peak footprint does not grow (the same tensors are alive at the peak), the
memory is only kept until the block ends, when glibc's defaults come back and the free memory is trimmed.

Generation uses it too (`inference.pipeline`, the eval runner): a batch-64 prefill's activations pass the 32 MiB
ceiling, so without the block each one was a fresh mmap faulted in page by page on every op.

Only glibc (Linux) has these knobs; elsewhere the block does nothing.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
GLIBC_DEFAULT = 128 * 1024  # both thresholds' initial value
KEEP = 1 << 30  # blocks up to 1 GiB come from the heap, and up to 1 GiB free stays there
KEEP_OLD_GLIBC = 32 << 20  # glibc before 2.35 refuses an mmap threshold above 32 MiB on 64-bit

_depth = 0


def _glibc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def _keep(libc: Any, size: int) -> bool:
    return bool(libc.mallopt(M_MMAP_THRESHOLD, size)) and bool(libc.mallopt(M_TRIM_THRESHOLD, size))


@contextmanager
def keep_freed_memory() -> Iterator[bool]:
    """Inside the block, freed memory is reused rather than returned to the OS; yields whether that applies."""
    global _depth
    libc = _glibc()
    applied = libc is not None and (_depth > 0 or _keep(libc, KEEP) or _keep(libc, KEEP_OLD_GLIBC))
    _depth += applied
    try:
        yield applied
    finally:
        _depth -= applied
        if applied and _depth == 0:
            libc.mallopt(M_MMAP_THRESHOLD, GLIBC_DEFAULT)
            libc.mallopt(M_TRIM_THRESHOLD, GLIBC_DEFAULT)
            libc.malloc_trim(0)
