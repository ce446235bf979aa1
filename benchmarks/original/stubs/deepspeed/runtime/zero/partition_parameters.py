"""`deepspeed.runtime.zero.partition_parameters` stand-in: only the enum TinyLLaVA Factory imports."""

from enum import Enum


class ZeroParamStatus(Enum):
    AVAILABLE = 1
    NOT_AVAILABLE = 2
    INFLIGHT = 3
