"""The fastest a training step of the reference workload could be on this machine: its matrix work alone.

A step's matrix multiplies and attention cannot be skipped without changing the loss. This script lists
them for one stage of the reference workload (the LLM's linear layers forward and backward, and causal
attention), times exactly those shapes here with torch at the given thread count, and adds the times up.
The sum is a floor on the step time: the real step also normalises, rotates, activates, copies and
updates weights. The floor is kept conservative (it can only be too low), so a speed target whose step
time is below it cannot be met on this machine in that dtype, whatever the rest of the code does:

- the last decoder layer is counted with its key and value projections only (its queries, output
  projection and feed-forward run at supervised positions only, and those are left out);
- the LM head, the connector and the vision tower (its features are cached) are left out;
- every sample is taken at the mean length (attention grows with the square of the length, so equal
  lengths give the least attention work for the same tokens).

    python benchmarks/matmul_floor.py --data-dir /tmp/bench/data --throughput /tmp/bench/quiet1.json

`--throughput` is the JSON `train_throughput.py` wrote; it gives the tokens per sample and the measured
samples/s. Prints a table per stage and writes JSON (`--json`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ORIGINAL = {"pretrain": 18.8, "finetune": 11.6}  # TinyLLaVA Factory, samples/s, 2 cores quiet, 2 threads
TARGET = {"pretrain": 3.0, "finetune": 2.0}  # the goal, times the original
BATCH = 8


@dataclass(frozen=True)
class Gemm:
    """An (m x k) @ (k x n) product, `count` times per step."""

    name: str
    m: int
    k: int
    n: int
    count: int = 1

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n * self.count


@dataclass(frozen=True)
class LlamaShape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int

    @property
    def kv_dim(self) -> int:
        return self.hidden // self.heads * self.kv_heads


def step_gemms(shape: LlamaShape, tokens: int, train_weights: bool) -> list[Gemm]:
    """The linear layers' products for one step over `tokens` packed tokens: forward, the input gradient, and
    with `train_weights` the weight gradient. The last layer counts its key and value projections only."""
    h, f, kv = shape.hidden, shape.intermediate, shape.kv_dim
    full = [("q", h, h), ("k", h, kv), ("v", h, kv), ("o", h, h), ("gate", h, f), ("up", h, f), ("down", f, h)]
    gemms: list[Gemm] = []
    for name, d_in, d_out in full:
        layers = shape.layers if name in ("k", "v") else shape.layers - 1
        if layers == 0:
            continue
        gemms.append(Gemm(f"{name} forward", tokens, d_in, d_out, layers))
        # the input gradient, in every stage: it carries the loss back to the connector's image tokens
        gemms.append(Gemm(f"{name} input grad", tokens, d_out, d_in, layers))
        if train_weights:
            gemms.append(Gemm(f"{name} weight grad", d_in, tokens, d_out, layers))
    return gemms


def time_gemm(gemm: Gemm, repeat: int) -> float:
    """Median seconds of one product of this shape (after one warm-up), times its count."""
    import torch

    a, b = torch.randn(gemm.m, gemm.k), torch.randn(gemm.k, gemm.n)
    torch.mm(a, b)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * gemm.count


def time_attention(shape: LlamaShape, length: int, layers: int, repeat: int) -> tuple[float, float]:
    """Median seconds of causal SDPA forward, and forward + backward, for a batch of BATCH samples of
    `length` tokens, times `layers`."""
    import torch
    import torch.nn.functional as F

    d = shape.hidden // shape.heads
    q = torch.randn(BATCH, shape.heads, length, d, requires_grad=True)
    k = torch.randn(BATCH, shape.heads, length, d, requires_grad=True)
    v = torch.randn(BATCH, shape.heads, length, d, requires_grad=True)
    fwd, both = [], []
    for i in range(repeat + 1):
        start = time.perf_counter()
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        mid = time.perf_counter()
        out.sum().backward()
        end = time.perf_counter()
        if i:  # the first is a warm-up
            fwd.append(mid - start)
            both.append(end - start)
    return statistics.median(fwd) * layers, statistics.median(both) * layers


def llama_shape(model_dir: Path) -> LlamaShape:
    cfg = json.loads((model_dir / "config.json").read_text())
    return LlamaShape(cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"],
                      cfg["num_attention_heads"], cfg.get("num_key_value_heads") or cfg["num_attention_heads"])


def stage_floor(stage: dict[str, Any], shape: LlamaShape, repeat: int) -> dict[str, Any]:
    tokens_per_sample = stage["real_tokens_per_s"] / stage["samples_per_s"]
    tokens = round(tokens_per_sample * BATCH)
    gemms = step_gemms(shape, tokens, train_weights=stage["stage"] != "pretrain")
    gemm_s = sum(time_gemm(g, repeat) for g in gemms)
    # attention in every layer but the last (there only supervised queries attend: left out)
    _, attention_s = time_attention(shape, round(tokens_per_sample), shape.layers - 1, repeat)
    floor_s = gemm_s + attention_s
    measured_step_s = BATCH / stage["samples_per_s"]
    target = TARGET[stage["stage"]] * ORIGINAL[stage["stage"]]
    return {
        "stage": stage["stage"], "tokens_per_step": tokens, "gemm_gflop": sum(g.flops for g in gemms) / 1e9,
        "gemm_ms": 1000 * gemm_s, "attention_ms": 1000 * attention_s, "floor_ms": 1000 * floor_s,
        "gemm_gflops_achieved": sum(g.flops for g in gemms) / gemm_s / 1e9,
        "measured_step_ms": 1000 * measured_step_s, "measured_samples_per_s": stage["samples_per_s"],
        "floor_samples_per_s": BATCH / floor_s, "target_samples_per_s": target,
        "target_step_ms": 1000 * BATCH / target, "target_reachable": BATCH / floor_s >= target,
        "gemms": [asdict(g) for g in gemms],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="the workload's folder (models/ inside)")
    parser.add_argument("--throughput", type=Path, required=True, help="train_throughput.py's JSON")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import torch
    from rich.console import Console
    from rich.table import Table

    torch.set_num_threads(args.threads)
    shape = llama_shape(args.data_dir / "models" / "tinyllama-tiny")
    summary = json.loads(args.throughput.read_text())
    stages = [s for s in summary["stages"] if s["stage"] in TARGET and s.get("variant", "A") == "A"]
    results = [stage_floor(s, shape, args.repeat) for s in stages]

    table = Table(title=f"matrix work alone, fp32, {args.threads} thread(s): the floor under a step")
    for col in ("stage", "tokens/step", "GFLOP (linears)", "linears ms", "attention ms", "floor ms",
                "GFLOP/s achieved", "measured step ms", "target step ms", "floor samples/s", "target samples/s"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(r["stage"], str(r["tokens_per_step"]), f"{r['gemm_gflop']:.1f}", f"{r['gemm_ms']:.0f}",
                      f"{r['attention_ms']:.0f}", f"{r['floor_ms']:.0f}", f"{r['gemm_gflops_achieved']:.0f}",
                      f"{r['measured_step_ms']:.0f}", f"{r['target_step_ms']:.0f}",
                      f"{r['floor_samples_per_s']:.1f}",
                      f"{r['target_samples_per_s']:.1f} ({'reachable' if r['target_reachable'] else 'NOT reachable'})")
    Console(width=200).print(table)
    out = args.json or args.throughput.with_name("matmul_floor.json")
    out.write_text(json.dumps({"threads": args.threads, "shape": asdict(shape), "stages": results}, indent=1))
    print(f"JSON: {out}")


if __name__ == "__main__":
    main()
