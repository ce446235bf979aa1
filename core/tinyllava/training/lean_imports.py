"""Import the training stack without paying at import time for what a run may never call.

`from transformers import Trainer` (and `set_seed`, `TrainerCallback`) imports peft when it is installed,
peft imports bitsandbytes when that is installed, and bitsandbytes wraps a few kernels in `torch.compile`
at import time, which imports TorchInductor: about a second of start-up (a third of it on the reference
workload) for a run that uses no 4-bit or 8-bit layer. Inside `compile_on_first_call()` a function given
to `torch.compile` is compiled when it is first called instead, with the same options, so nothing changes
for code that does use those kernels (a failed compilation still surfaces at the call, where bitsandbytes
falls back to the plain function).

Likewise accelerate imports DeepSpeed (half a second or more) the first time it unwraps a model, only to
check whether the model is a DeepSpeed engine: a model cannot be one unless DeepSpeed was imported, so
the check is skipped until something (a DeepSpeed stage) has imported it.

Finally the objects those imports create (several hundred thousand) are moved out of the garbage
collector's sight (`gc.freeze()`, by the call that imports them): the Trainer runs a full collection before and after
each stage, which otherwise walks all of them (0.1-0.2 s each), as do the automatic ones.
"""

from __future__ import annotations

import functools
import gc
import inspect
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def _deferred(real: Callable[..., Any]) -> Callable[..., Any]:
    def compile_later(model: Any = None, **options: Any) -> Any:
        if model is None:  # used as @torch.compile(...)
            return lambda fn: compile_later(fn, **options)
        if not inspect.isfunction(model):  # modules and other callables: compile now, as asked
            return real(model, **options)
        compiled: Any = None

        @functools.wraps(model)
        def call(*args: Any, **kwargs: Any) -> Any:
            nonlocal compiled
            if compiled is None:
                compiled = real(model, **options)
            return compiled(*args, **kwargs)

        return call

    return compile_later


@contextmanager
def compile_on_first_call() -> Iterator[None]:
    """While active, `torch.compile(function)` defers compiling (and importing the compiler) to the first call."""
    import torch

    real = torch.compile
    torch.compile = _deferred(real)  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.compile = real  # type: ignore[assignment]


def import_training_stack() -> None:
    """Import transformers' Trainer (and through it peft and bitsandbytes, when installed) with compilation
    deferred. Call it before anything imports `transformers.trainer_utils`; later imports are free."""
    if "transformers.trainer" in sys.modules:
        _deepspeed_check_when_imported()
        return  # imported earlier (e.g. a process that trains several times): freeze no one else's garbage
    with compile_on_first_call():
        import transformers.trainer  # noqa: F401
    _deepspeed_check_when_imported()
    gc.freeze()


def _deepspeed_check_when_imported() -> None:
    try:
        import accelerate.utils.other as other
    except ImportError:
        return
    real = other.is_deepspeed_available
    if getattr(real, "_tinyllava_deferred", False):
        return

    def is_deepspeed_available() -> bool:
        return "deepspeed" in sys.modules and bool(real())

    is_deepspeed_available._tinyllava_deferred = True  # type: ignore[attr-defined]
    other.is_deepspeed_available = is_deepspeed_available
