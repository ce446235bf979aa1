"""`deepspeed.zero` stand-in: `GatheredParameters` is a no-op context manager (no ZeRO-3 partitioning here)."""

import contextlib


@contextlib.contextmanager
def GatheredParameters(params, modifier_rank=None, fwd_module=None, enabled=True):  # noqa: N802
    yield
