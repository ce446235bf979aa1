"""Peak host memory per rank under DeepSpeed ZeRO-3: 1 vs 2 processes, sharded init on vs off.

    python benchmarks/zero3_peak_rss.py --out /tmp/zero3-rss [--layers 16 --hidden 512]

Saves a pretrained Llama-architecture LLM of the given size (random weights) to a folder, so it loads through
transformers' from_pretrained (where sharded init applies), then trains 2 steps of the tiny shapes data under
ZeRO-3 in each setting. Each rank reports its peak RSS (ru_maxrss) once the model is built (before DeepSpeed
starts: what sharded init changes) and when it exits (the whole run: gathers for the forward pass and for
saving the checkpoint included). Prints a table and writes
results.json and peak_rss.png next to the runs (`--plot-only` redraws the picture from results.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

WORKER = """
import atexit, os, resource, sys
from pathlib import Path
def report(what):
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(os.environ["RSS_DIR"], f"{what}{os.environ.get('RANK', '0')}.txt").write_text(f"{peak_mb:.0f}")
atexit.register(report, "run")
import tinyllava.training.runner as runner
run_stage = runner._run_stage
def first_stage(*args, **kwargs):  # the model is built, DeepSpeed has not started yet
    report("build")
    return run_stage(*args, **kwargs)
runner._run_stage = first_stage
from tinyllava_cli.app import main
sys.argv = ["tinyllava", *sys.argv[1:]]
main()
"""


def save_llm(folder: Path, layers: int, hidden: int, dtype: str = "float32") -> int:
    from tinyllava.plugins.registry import get_registry
    from tinyllava.testing import TINY_MODEL

    options = {k: v for k, v in TINY_MODEL["llm"].items() if k != "name"}
    options["config"] = {**options["config"], "hidden_size": hidden, "intermediate_size": hidden * 8 // 3,
                         "num_hidden_layers": layers, "num_attention_heads": max(hidden // 64, 1),
                         "num_key_value_heads": max(hidden // 64, 1), "tie_word_embeddings": False}
    parts = get_registry().create("llm", "llama", options).build()
    import torch

    parts.model.to(getattr(torch, dtype)).save_pretrained(folder)  # loaded back as float32 (the LLM's dtype)
    parts.tokenizer.save_pretrained(folder)
    return sum(p.numel() for p in parts.model.parameters())


def plot(summary: dict, path: Path) -> None:
    """Per rank and setting: peak RSS once the model is built, and over the whole run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, build, run = [], [], []
    for row in summary["runs"]:
        for rank in range(row["processes"]):
            labels.append(f"{row['processes']} proc {'sharded' if row['sharded_init'] else 'whole'}\nrank {rank}")
            build.append(row["peak_rss_mb_after_build"][rank])
            run.append(row["peak_rss_mb_whole_run"][rank])
    xs = range(len(labels))
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.bar([x - 0.2 for x in xs], build, width=0.4, label="after the model is built")
    ax.bar([x + 0.2 for x in xs], run, width=0.4, label="whole run")
    for x, (b, r) in enumerate(zip(build, run, strict=True)):
        ax.text(x - 0.2, b, str(b), ha="center", va="bottom", fontsize=7)
        ax.text(x + 0.2, r, str(r), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_ylabel("peak RSS (MB)")
    ax.set_title(f"ZeRO-3 peak host memory per rank, LLM of {summary['llm_parameters'] / 1e6:.0f}M parameters")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--save-dtype", default="float32", choices=["float32", "bfloat16"],
                        help="dtype of the saved LLM (bfloat16: every rank converts it to float32 when loading)")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="process counts to measure")
    parser.add_argument("--plot-only", action="store_true", help="redraw peak_rss.png from results.json")
    args = parser.parse_args()
    if args.plot_only:
        plot(json.loads((args.out / "results.json").read_text()), args.out / "peak_rss.png")
        return
    from tinyllava.testing import tiny_run_spec

    args.out.mkdir(parents=True, exist_ok=True)
    llm_params = save_llm(args.out / "llm", args.layers, args.hidden, args.save_dtype)
    raw = tiny_run_spec(args.out / "runs", steps=2, num_images=8)
    raw["stages"] = raw["stages"][1:]
    raw["stages"][0].update({"deepspeed": "zero3", "batch_size": 2, "save_steps": 100})
    raw["model"]["llm"] = {"name": "llama", "source": str(args.out / "llm")}
    spec = args.out / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    worker = args.out / "worker.py"
    worker.write_text(WORKER)
    results = []
    for nproc in args.procs:
        for sharded in (True, False):
            name = f"p{nproc}-{'sharded' if sharded else 'whole'}"
            rss_dir = args.out / "rss" / name
            rss_dir.mkdir(parents=True, exist_ok=True)
            env = {**os.environ, "OMP_NUM_THREADS": "1", "RSS_DIR": str(rss_dir),
                   "TINYLLAVA_SHARDED_INIT": "1" if sharded else "0"}
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                   str(worker), "train", str(spec), "--set", f"name={name}"]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                sys.exit(f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            build = [int((rss_dir / f"build{r}.txt").read_text()) for r in range(nproc)]
            run = [int((rss_dir / f"run{r}.txt").read_text()) for r in range(nproc)]
            results.append({"processes": nproc, "sharded_init": sharded, "peak_rss_mb_after_build": build,
                            "peak_rss_mb_whole_run": run})
            print(f"{name}: peak RSS per rank (MB) after the build {build}, whole run {run}", flush=True)
    summary = {"llm_parameters": llm_params, "saved_dtype": args.save_dtype,
               "llm_fp32_mb": round(llm_params * 4 / 2**20), "runs": results}
    (args.out / "results.json").write_text(json.dumps(summary, indent=2))
    print(f"\nLLM: {llm_params / 1e6:.1f}M parameters ({summary['llm_fp32_mb']} MB in fp32)")
    print(f"{'processes':>9} {'sharded init':>12} {'after build (MB/rank)':>22} {'whole run (MB/rank)':>20}")
    for row in results:
        print(f"{row['processes']:>9} {str(row['sharded_init']):>12} {str(row['peak_rss_mb_after_build']):>22} "
              f"{str(row['peak_rss_mb_whole_run']):>20}")
    plot(summary, args.out / "peak_rss.png")
    print(f"results: {args.out / 'results.json'}, {args.out / 'peak_rss.png'}")


if __name__ == "__main__":
    main()
