"""A stage's global batch: the samples of one optimizer step over all processes.

A spec describes a stage as it runs in one process: `batch_size` samples per forward pass, `grad_accum` passes per
step, so `batch_size × grad_accum` samples per step (or `global_batch_size`, when given). With `--nproc N` (or
several nodes) that global batch is kept: each process takes `global / N` samples per step, in passes of at most
`batch_size` (the memory bound), and the accumulation makes up the rest. The number of optimizer steps, and so
the learning-rate schedule, does not change with the number of processes. `batch_scaling: per_process` keeps the
old meaning instead: `batch_size` and `grad_accum` per process, the global batch growing with N.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class BatchError(ValueError):
    """The stage's global batch cannot be split over this many processes; the message says what to change."""


@dataclass(frozen=True)
class BatchPlan:
    """How one optimizer step's samples are split: per process and pass, passes per step, processes."""

    per_device: int
    grad_accum: int
    world_size: int

    @property
    def global_batch(self) -> int:
        return self.per_device * self.grad_accum * self.world_size

    def describe(self) -> str:
        return (f"global batch {self.global_batch} = {self.per_device} per process × {self.grad_accum} "
                f"accumulation step(s) × {self.world_size} process(es)")


def stage_global_batch(stage: Any) -> int:
    """The samples per optimizer step the stage asks for (as if it ran in one process)."""
    return int(stage.global_batch_size or stage.batch_size * stage.grad_accum)


def plan_batch(stage: Any, world_size: int, where: str = "") -> BatchPlan:
    """The split of the stage's global batch over `world_size` processes (see the module docstring)."""
    where = where or f"stage {stage.name!r}"
    world_size = max(int(world_size), 1)
    if getattr(stage, "batch_scaling", "global") == "per_process":
        return BatchPlan(stage.batch_size, stage.grad_accum, world_size)
    if stage.global_batch_size is not None and stage.grad_accum != 1:
        raise BatchError(f"{where}: give global_batch_size or grad_accum, not both (grad_accum is derived from "
                         f"global_batch_size, batch_size and the number of processes)")
    total = stage_global_batch(stage)
    if total % world_size:
        raise BatchError(f"{where}: the global batch of {total} samples cannot be split evenly over {world_size} "
                         f"processes; set global_batch_size to a multiple of {world_size} (or batch_scaling: "
                         f"per_process to let the global batch grow with the processes)")
    per_process = total // world_size
    per_device = max(d for d in range(1, min(stage.batch_size, per_process) + 1) if per_process % d == 0)
    return BatchPlan(per_device, per_process // per_device, world_size)


def batch_problems(spec: Any, world_size: int) -> list[str]:
    """Every stage whose global batch cannot be split over `world_size` processes (checked before launching)."""
    problems = []
    for index, stage in enumerate(spec.stages):
        try:
            plan_batch(stage, world_size, f"stages.{index} ({stage.name})")
        except BatchError as exc:
            problems.append(str(exc))
    return problems
