"""Processes and engines: torchrun ranks, the process group, and DeepSpeed configs.

Rank 0 materialises data and writes checkpoints; the other ranks wait at a barrier. DeepSpeed's
ZeRO configs ship with the package (the same files as configs/deepspeed/*.json) so that `zero2`,
`zero3` and `zero3_offload` work from an installed wheel too.
"""

from __future__ import annotations

import copy
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_COMMON: dict[str, Any] = {
    "bf16": {"enabled": "auto"},
    "fp16": {"enabled": "auto"},
    "train_micro_batch_size_per_gpu": "auto",
    "train_batch_size": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "steps_per_print": 1000000,
    "wall_clock_breakdown": False,
}

DEEPSPEED_CONFIGS: dict[str, dict[str, Any]] = {
    "zero2": {
        **_COMMON,
        "zero_optimization": {
            "stage": 2,
            "overlap_comm": True,
            "contiguous_gradients": True,
            "allgather_bucket_size": 200000000,
            "reduce_bucket_size": "auto",
        },
    },
    "zero3": {
        **_COMMON,
        "zero_optimization": {
            "stage": 3,
            "overlap_comm": True,
            "contiguous_gradients": True,
            "sub_group_size": 1000000000,
            "reduce_bucket_size": "auto",
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            "stage3_max_live_parameters": 1000000000,
            "stage3_max_reuse_distance": 1000000000,
            "stage3_gather_16bit_weights_on_model_save": True,
        },
    },
    "zero3_offload": {
        **_COMMON,
        "zero_optimization": {
            "stage": 3,
            "offload_optimizer": {"device": "cpu", "pin_memory": True},
            "offload_param": {"device": "cpu", "pin_memory": True},
            "overlap_comm": True,
            "contiguous_gradients": True,
            "sub_group_size": 1000000000,
            "reduce_bucket_size": "auto",
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            "stage3_max_live_parameters": 1000000000,
            "stage3_max_reuse_distance": 1000000000,
            "stage3_gather_16bit_weights_on_model_save": True,
        },
    },
}


class DeepSpeedConfigError(ValueError):
    """The stage's `deepspeed` value is neither a built-in name nor a readable JSON config."""


def deepspeed_config(value: str | None, where: str = "deepspeed") -> dict[str, Any] | None:
    """The config dict for a stage's `deepspeed` value (a built-in name or a JSON file path)."""
    if value is None:
        return None
    if value in DEEPSPEED_CONFIGS:
        config = copy.deepcopy(DEEPSPEED_CONFIGS[value])
    else:
        path = Path(value).expanduser()
        if not path.is_file():
            raise DeepSpeedConfigError(f"{where}: {value!r} is neither a built-in config "
                                       f"({', '.join(DEEPSPEED_CONFIGS)}) nor an existing JSON file")
        try:
            config = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DeepSpeedConfigError(f"{where}: {path} is not valid JSON: {exc}") from None
    for section in ("optimizer", "scheduler"):
        if section in config:
            raise DeepSpeedConfigError(
                f"{where}: remove the {section!r} section; tinyllava builds the optimizer (per-component learning "
                f"rates, no decay on norms and biases) and the schedule from the stage"
            )
    zero = config.setdefault("zero_optimization", {})
    if zero.get("stage") == 3:
        if zero.get("stage3_gather_16bit_weights_on_model_save") is False:
            raise DeepSpeedConfigError(f"{where}: stage3_gather_16bit_weights_on_model_save must stay true; the "
                                       f"checkpoint is written from the gathered weights")
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return config


def zero_stage(config: dict[str, Any] | None) -> int:
    return int((config or {}).get("zero_optimization", {}).get("stage", 0))


def offloads_optimizer(config: dict[str, Any] | None) -> bool:
    offload = (config or {}).get("zero_optimization", {}).get("offload_optimizer") or {}
    return offload.get("device", "none") not in ("none", None)


@dataclass
class Processes:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    created_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Processes:
        return cls(
            rank=int(os.environ.get("RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )

    def start(self, need_group: bool) -> None:
        """Join (or, for DeepSpeed in a single process, create) the process group before any barrier."""
        import torch
        import torch.distributed as dist

        if not (need_group or self.world_size > 1) or dist.is_initialized():
            return
        if "MASTER_ADDR" not in os.environ:  # one process, started without a launcher
            os.environ.setdefault("RANK", "0")
            os.environ.setdefault("LOCAL_RANK", "0")
            os.environ.setdefault("WORLD_SIZE", "1")
            os.environ["MASTER_ADDR"] = "127.0.0.1"
            os.environ["MASTER_PORT"] = str(free_port())
        if torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank)
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        self.created_group = True

    def barrier(self) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.barrier()

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. writing a data cache); the others then run it on the result."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def stop(self) -> None:
        import torch.distributed as dist

        if self.created_group and dist.is_initialized():
            dist.destroy_process_group()
            self.created_group = False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reset_accelerate_state() -> None:
    """Forget the engine a finished stage set up, so the next stage may choose another one."""
    try:
        from accelerate.state import AcceleratorState
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config
    except ImportError:  # pragma: no cover - accelerate comes with the train extra
        return
    AcceleratorState._reset_state(reset_partial_state=False)
    unset_hf_deepspeed_config()


@dataclass(frozen=True)
class Launch:
    """Where this `tinyllava train` runs: processes on this machine, machines in the run, and how they meet.

    One machine: torchrun's standalone mode (a free local port). Several machines (`--nnodes N`): every machine
    runs the same command with its own `--node-rank`, and all of them reach the rank-0 machine at
    `--master-addr:--master-port` (torchrun's static rendezvous). Data and output_dir must be on a filesystem
    every machine sees: rank 0 prepares the data and writes the checkpoints.
    """

    nproc: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int = 29500

    @property
    def launches(self) -> bool:
        """Whether this command starts a launcher (more than one process in all)."""
        return self.nproc > 1 or self.nnodes > 1

    def problem(self) -> str | None:
        """What is wrong with the flags, as one line naming the flag, or None."""
        if self.nproc < 1:
            return f"--nproc {self.nproc}: give a number of processes, 1 or more"
        if self.nnodes < 1:
            return f"--nnodes {self.nnodes}: give a number of machines, 1 or more"
        if not 0 <= self.node_rank < self.nnodes:
            return f"--node-rank {self.node_rank}: give this machine's place among --nnodes {self.nnodes}, 0 to " \
                   f"{self.nnodes - 1}"
        if self.nnodes > 1 and not self.master_addr:
            return "--nnodes > 1 needs --master-addr: the address of the --node-rank 0 machine, which every machine " \
                   "can reach"
        if not 0 < self.master_port < 65536:
            return f"--master-port {self.master_port}: give a TCP port, 1 to 65535"
        return None

    def torchrun(self) -> list[str]:
        """The launcher's command line up to the program (`-m tinyllava_cli.app ...` follows)."""
        import sys

        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={self.nproc}"]
        if self.nnodes == 1:
            return [*cmd, "--standalone"]
        return [*cmd, f"--nnodes={self.nnodes}", f"--node-rank={self.node_rank}",
                f"--master-addr={self.master_addr}", f"--master-port={self.master_port}"]
