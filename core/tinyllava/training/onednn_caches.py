"""Bound oneDNN's per-shape caches for bf16 training on the CPU.

On the CPU, PyTorch runs bf16 matrix multiplies through oneDNN (fp32 ones through MKL), which builds a JIT
primitive for every distinct problem shape and keeps up to 1024 of them (plus ideep's own cache of the same
size). A packed or padded batch has a new row length nearly every step, so each step adds a dozen primitives
(about 1 MB each): on the reference workload a 50-step bf16 stage ended at 1.3-1.8 GB peak RSS against
0.6-0.7 GB for fp32, all of it cached kernels for shapes that never came back. Keeping the last 64 (a few steps'
worth, so the layers of one step still share them) brings bf16 back to the fp32 footprint at about the same
speed.

Both caches read their capacity from the environment when first used, so `bound_onednn_caches` must run before
the process's first bf16 op; a capacity the user set is left alone.
"""

from __future__ import annotations

import os

CAPACITY = 64
VARIABLES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")  # oneDNN's, ideep's


def bound_onednn_caches(capacity: int = CAPACITY) -> dict[str, str]:
    """Set the caches' capacity unless the environment already does; returns what it set."""
    chosen = {name: str(capacity) for name in VARIABLES if name not in os.environ}
    os.environ.update(chosen)
    return chosen
