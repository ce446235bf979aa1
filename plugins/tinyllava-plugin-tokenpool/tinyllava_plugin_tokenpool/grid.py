"""The square-grid check shared by the pooling connectors (pure Python, so `build` can fail early)."""

from __future__ import annotations

import math


def grid_side(num_tokens: int, factor: int, connector: str) -> int:
    """Side of the square patch grid the tokens form; a clear error when pooling by `factor` is impossible."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(
            f"connector {connector!r} needs the image tokens to form a square grid, but got {num_tokens} "
            f"tokens (not a perfect square); if the vision tower keeps a CLS token, select patch features only"
        )
    if side % factor:
        raise ValueError(
            f"connector {connector!r} with factor={factor} needs the grid side to be divisible by the factor, "
            f"but the {num_tokens} image tokens form a {side}x{side} grid; choose a factor that divides {side}"
        )
    return side
