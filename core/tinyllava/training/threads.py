"""How many torch CPU threads a run uses when the spec does not say.

torch's own default is every physical core. On a machine where another process already keeps a core busy,
that is the slowest choice: measured on the 2-core reference machine with one other busy process, two threads
made the quickstart's align steps 4.3x slower than one. So the default counts the cores this process may run
on (its CPU affinity) minus those the load average says are busy, and never fewer than one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class ThreadChoice:
    threads: int | None   # None: leave torch's setting alone
    reason: str


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def busy_cores(load: float | None = None) -> int:
    """Cores other processes keep busy: the 1-minute load average, less about half a core for this process
    (it has just started, so it adds a fraction of a core to the average)."""
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            return 0
    return max(0, round(load - 0.5))


def choose_threads(requested: int | str | None, *, cores: int | None = None, load: float | None = None,
                   processes: int | None = None, env: dict[str, str] | None = None) -> ThreadChoice:
    """The spec's number; else OMP_NUM_THREADS when set (left to torch); else the free cores per process."""
    env = os.environ if env is None else env
    if isinstance(requested, int):
        return ThreadChoice(requested, "num_threads in the spec")
    if requested is None and env.get("OMP_NUM_THREADS"):
        return ThreadChoice(None, f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']}")
    cores = cores if cores is not None else usable_cores()
    processes = processes if processes is not None else max(1, int(env.get("LOCAL_WORLD_SIZE", "1") or 1))
    busy = busy_cores(load)
    free = max(1, cores - busy)
    threads = max(1, free // processes)
    per = f" shared by {processes} processes" if processes > 1 else ""
    return ThreadChoice(threads, f"{cores} core(s), {min(busy, cores)} busy with other work{per}")
