"""A stand-in for `deepspeed`, written for the benchmark harness (not DeepSpeed's code).

TinyLLaVA Factory's `tinyllava/utils/train_utils.py` imports `deepspeed.zero` and
`deepspeed.runtime.zero.partition_parameters.ZeroParamStatus` at module level, but a single-process CPU run
never uses ZeRO: parameters never carry `ds_id`, so neither name is reached at run time. This package has no
distribution metadata, so transformers' and accelerate's `is_deepspeed_available()` still say False.
"""

from . import zero  # noqa: F401

__version__ = "0.0.0+stub"
