"""Peak host memory per rank under DeepSpeed ZeRO-3: 1 vs 2 processes, sharded init on vs off.

    python benchmarks/zero3_peak_rss.py --out /tmp/zero3-rss [--layers 16 --hidden 512]

Saves a pretrained Llama-architecture LLM of the given size (random weights) to a folder, so it loads through
transformers' from_pretrained (where sharded init applies), then trains 2 steps of the tiny shapes data under
ZeRO-3 in each setting. Each rank reports its peak RSS (ru_maxrss) when it exits. Prints a table and writes
results.json next to the runs.
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
def report():
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(os.environ["RSS_DIR"], f"rank{os.environ.get('RANK', '0')}.txt").write_text(f"{peak_mb:.0f}")
atexit.register(report)
from tinyllava_cli.app import main
sys.argv = ["tinyllava", *sys.argv[1:]]
main()
"""


def save_llm(folder: Path, layers: int, hidden: int) -> int:
    from tinyllava.plugins.registry import get_registry
    from tinyllava.testing import TINY_MODEL

    options = {k: v for k, v in TINY_MODEL["llm"].items() if k != "name"}
    options["config"] = {**options["config"], "hidden_size": hidden, "intermediate_size": hidden * 8 // 3,
                         "num_hidden_layers": layers, "num_attention_heads": max(hidden // 64, 1),
                         "num_key_value_heads": max(hidden // 64, 1), "tie_word_embeddings": False}
    parts = get_registry().create("llm", "llama", options).build()
    parts.model.save_pretrained(folder)
    parts.tokenizer.save_pretrained(folder)
    return sum(p.numel() for p in parts.model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=512)
    args = parser.parse_args()
    from tinyllava.testing import tiny_run_spec

    args.out.mkdir(parents=True, exist_ok=True)
    llm_params = save_llm(args.out / "llm", args.layers, args.hidden)
    raw = tiny_run_spec(args.out / "runs", steps=2, num_images=8)
    raw["stages"] = raw["stages"][1:]
    raw["stages"][0].update({"deepspeed": "zero3", "batch_size": 2, "save_steps": 100})
    raw["model"]["llm"] = {"name": "llama", "source": str(args.out / "llm")}
    spec = args.out / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    worker = args.out / "worker.py"
    worker.write_text(WORKER)
    results = []
    for nproc in (1, 2):
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
            ranks = [int((rss_dir / f"rank{r}.txt").read_text()) for r in range(nproc)]
            results.append({"processes": nproc, "sharded_init": sharded, "peak_rss_mb_per_rank": ranks})
            print(f"{name}: peak RSS per rank (MB) {ranks}", flush=True)
    summary = {"llm_parameters": llm_params, "llm_fp32_mb": round(llm_params * 4 / 2**20), "runs": results}
    (args.out / "results.json").write_text(json.dumps(summary, indent=2))
    print(f"\nLLM: {llm_params / 1e6:.1f}M parameters ({summary['llm_fp32_mb']} MB in fp32)")
    print(f"{'processes':>9} {'sharded init':>12} {'peak RSS per rank (MB)':>24}")
    for row in results:
        print(f"{row['processes']:>9} {str(row['sharded_init']):>12} {str(row['peak_rss_mb_per_rank']):>24}")
    print(f"results: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
