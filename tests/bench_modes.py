"""Trainable parameters and median step time per tuning mode / engine on the default tiny model.

Not collected by pytest (no test_ prefix). Each mode runs in a fresh process so that one engine's state
(DeepSpeed, process groups, bitsandbytes) never leaks into the next:

    python tests/bench_modes.py                          # every mode, 12 steps each
    python tests/bench_modes.py --modes lora qlora-nf4   # some modes
    python tests/bench_modes.py --compile-cost           # also DeepSpeed's first-use C++ op builds

The step time is wall time between optimizer steps (data, forward, backward, optimizer), median over
the steps after the first; the model is `tinyllava.testing.TINY_MODEL`, batch 4, one thread per process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

QLORA_NF4 = {"mode": "qlora", "lora": {"r": 16}, "quant": {"bits": 4}}
MODES: dict[str, dict[str, Any]] = {
    "connector (pretrain)": {"tune": {"llm": "frozen", "vision_tower": "frozen", "connector": "full"}},
    "full": {"tune": {"llm": "full", "vision_tower": "frozen", "connector": "full"}},
    "full + tower": {"tune": {"llm": "full", "vision_tower": "full", "connector": "full"}},
    "partial (llm from 1)": {"tune": {"llm": {"mode": "partial", "from_layer": 1}, "vision_tower": "frozen",
                                      "connector": "full"}},
    "lora r16": {"tune": {"llm": {"mode": "lora", "lora": {"r": 16}}, "vision_tower": "frozen", "connector": "full"}},
    "lora r16 llm + tower": {"tune": {"llm": {"mode": "lora", "lora": {"r": 16}},
                                      "vision_tower": {"mode": "lora", "lora": {"r": 16}}, "connector": "full"}},
    "qlora nf4 r16": {"tune": {"llm": QLORA_NF4, "vision_tower": "frozen", "connector": "full"}},
    "qlora int8 r16": {"tune": {"llm": {**QLORA_NF4, "quant": {"bits": 8}}, "vision_tower": "frozen",
                                "connector": "full"}},
    "full + grad ckpt": {"tune": {"llm": "full", "vision_tower": "frozen", "connector": "full"},
                         "gradient_checkpointing": True},
    "full + bf16": {"tune": {"llm": "full", "vision_tower": "frozen", "connector": "full"}, "bf16": True},
    "full, ZeRO-2": {"tune": {"llm": "full", "vision_tower": "frozen", "connector": "full"}, "deepspeed": "zero2"},
    "full, ZeRO-3": {"tune": {"llm": "full", "vision_tower": "frozen", "connector": "full"}, "deepspeed": "zero3"},
    "lora r16, ZeRO-2": {"tune": {"llm": {"mode": "lora", "lora": {"r": 16}}, "vision_tower": "frozen",
                                  "connector": "full"}, "deepspeed": "zero2"},
    "full, 2 processes (gloo)": {"tune": {"llm": "full", "vision_tower": "frozen", "connector": "full"},
                                 "nproc": 2},
}


def worker(mode: str, out_file: Path, steps: int) -> None:
    """Run one mode in this process (under torchrun for several processes); rank 0 writes the result."""
    import torch

    torch.set_num_threads(1)
    from rich.console import Console

    import tinyllava.training.runner as runner
    from tinyllava.spec import resolve_spec
    from tinyllava.testing import tiny_run_spec
    from tinyllava.training.trainer import RichProgressCallback

    settings = dict(MODES[mode])
    settings.pop("nproc", None)
    root = out_file.parent / "runs"
    raw = tiny_run_spec(root, name=f"bench-{abs(hash(mode))}", steps=steps, save_steps=10_000, num_images=64)
    raw["stages"] = raw["stages"][1:]
    raw["stages"][0].update({"recipe": "qlora", "logging_steps": 10_000, **settings})
    rows: list[tuple] = []
    stamps: list[float] = []
    show = runner.print_parameter_table

    def capture(console: Any, model: Any, stage: Any) -> None:
        from tinyllava.training.parameters import parameter_table

        rows.extend(parameter_table(model, stage))
        show(console, model, stage)

    runner.print_parameter_table = capture  # type: ignore[assignment]
    step_end = RichProgressCallback.on_step_end

    def stamp(self: Any, *args: Any, **kwargs: Any) -> None:
        stamps.append(time.perf_counter())
        step_end(self, *args, **kwargs)

    RichProgressCallback.on_step_end = stamp  # type: ignore[method-assign]
    with open(os.devnull, "w") as sink:
        runner.run_training(resolve_spec(raw), console=Console(file=sink))
    if int(os.environ.get("RANK", "0")) != 0:
        return
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    out_file.write_text(json.dumps({
        "trainable": sum(r[2] for r in rows), "total": sum(r[1] for r in rows),
        "per_component": {r[0]: [r[1], r[2], r[3]] for r in rows},
        "median_step_ms": 1000 * statistics.median(gaps), "steps": len(stamps),
    }))


def run_mode(mode: str, steps: int, scratch: Path) -> dict[str, Any]:
    out = scratch / f"{abs(hash(mode))}.json"
    me = str(Path(__file__).resolve())
    args = [me, "--worker", mode, "--out", str(out), "--steps", str(steps)]
    nproc = MODES[mode].get("nproc", 1)
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
           if nproc > 1 else [sys.executable, *args])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1]}
    return json.loads(out.read_text())


def compile_cost() -> dict[str, float]:
    """Seconds to build DeepSpeed's C++ ops from scratch (what the first run on a fresh machine pays)."""
    costs = {}
    for label, module, cls in (("shm comm (every CPU run)", "deepspeed.ops.op_builder.cpu", "ShareMemCommBuilder"),
                               ("cpu_adam (ZeRO-Offload)", "deepspeed.ops.op_builder.cpu", "CPUAdamBuilder")):
        with tempfile.TemporaryDirectory() as cache:
            code = (f"import time; from {module} import {cls}; t = time.perf_counter(); {cls}().load(); "
                    f"print(time.perf_counter() - t)")
            env = {**os.environ, "TORCH_EXTENSIONS_DIR": cache}
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
            lines = proc.stdout.strip().splitlines()
            costs[label] = float(lines[-1]) if proc.returncode == 0 and lines else float("nan")
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="*", default=list(MODES), help="which modes (default: all)")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per mode")
    parser.add_argument("--compile-cost", action="store_true", help="also time DeepSpeed's first-use op builds")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.out, args.steps)
        return
    unknown = [m for m in args.modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {unknown}; choose from {list(MODES)}")
    print("| mode | trainable / total params | median step (ms) |")
    print("|---|---:|---:|")
    with tempfile.TemporaryDirectory() as scratch:
        for mode in args.modes:
            res = run_mode(mode, args.steps, Path(scratch))
            if "error" in res:
                print(f"| {mode} | failed: {res['error']} | |")
            else:
                print(f"| {mode} | {res['trainable']:,} / {res['total']:,} | {res['median_step_ms']:.1f} |",
                      flush=True)
    if args.compile_cost:
        for label, seconds in compile_cost().items():
            print(f"DeepSpeed first-use build, {label}: {seconds:.1f} s")


if __name__ == "__main__":
    main()
