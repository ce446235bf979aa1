"""Build DeepSpeed's C++ ops once, before tests start training processes that load them.

DeepSpeed compiles some ops on first use (on a CPU machine, the shared-memory collective op every process group
loads; with ZeRO-Offload, CPU Adam) into the torch extensions cache. A cold build takes minutes on a busy machine
and would be paid inside the first timed training subprocess, with other subprocesses waiting on its lock.
"""

from __future__ import annotations


def build_deepspeed_ops(names: tuple[str, ...] = ("ShareMemCommBuilder",)) -> list[str]:
    """Build (or load from the cache) these op builders' ops where this machine has them (default: the collective
    op every CPU process group loads; add "CPUAdamBuilder" for ZeRO-Offload); the names of those built."""
    import deepspeed.ops
    from deepspeed.accelerator import get_accelerator

    built = []
    for name in names:
        builder = get_accelerator().create_op_builder(name)
        if builder is None or not deepspeed.ops.__compatible_ops__.get(builder.NAME, False):
            continue
        builder.load(verbose=False)
        built.append(builder.NAME)
    return built
