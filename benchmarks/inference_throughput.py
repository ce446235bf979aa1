"""Inference throughput: answers/s at several batch sizes and model load time, through the eval runner's path.

Two workloads, 200 image questions each by default:

- `reference`: the reference workload's models (`DATA_DIR/models`: the TinyLlama-architecture LLM and the
  CLIP ViT, with a 2-layer MLP connector, assembled into a tinyllava checkpoint once and cached in the work
  folder), asked the first question of the first image records of `DATA_DIR/finetune.json`, 16 new tokens
  (TinyLLaVA Factory answers 7-8.7 of them a second at batch 1 on this machine type, 2 threads, quiet);
- `shapes`: a quickstart-like checkpoint (`--shapes-checkpoint`, default: the quickstart's model with random
  weights) on the `shapes` benchmark's questions, its own 8 new tokens.

Every measurement is a fresh process: it imports torch and transformers, then times `load_checkpoint` (plugin
discovery included), a second load (warm), and `generate_answers` over all questions at one batch size.
Processes are interleaved (workload x batch size x source tree, `--repeat` times) so that a busy machine slows
every variant alike; with `--src OTHER_CHECKOUT` each figure comes with the other checkout's and their ratio.

    python benchmarks/inference_throughput.py --data-dir /tmp/bench/data
    python benchmarks/inference_throughput.py --data-dir D --src /tmp/old-checkout --repeat 2
    python benchmarks/inference_throughput.py --data-dir D --workloads reference --batch-sizes 16 --profile
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from checkouts import checkout_pythonpath  # benchmarks/ is on sys.path: it is the script's folder

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ORIGINAL_BATCH1 = (7.0, 8.7)  # TinyLLaVA Factory, reference workload, answers/s at batch 1 (2 cores, quiet)
WORKLOADS = ("reference", "shapes")


# -- checkpoints and questions (built in the parent, with this checkout's code) -----------------------------


def reference_checkpoint(data_dir: Path, work: Path) -> Path:
    """The reference models assembled into a tinyllava checkpoint (connector seeded), built once."""
    out = work / "checkpoints" / "reference"
    if (out / "tinyllava.json").is_file():
        return out
    spec = {
        "llm": {"name": "llama", "source": str(data_dir / "models" / "tinyllama-tiny"), "attn_implementation": "sdpa"},
        "vision_tower": {"name": "clip", "source": str(data_dir / "models" / "clip-vit-tiny"), "feature_layer": -2,
                         "feature_strategy": "patch"},
        "connector": {"name": "mlp", "depth": 2},
        "chat_template": {"name": "llama"},
        "max_length": 2048,
    }
    return _save_fresh(spec, out)


def shapes_checkpoint(work: Path) -> Path:
    """The quickstart's model (configs/quickstart.yaml), random weights: the shapes of a trained one."""
    import yaml

    out = work / "checkpoints" / "shapes-quickstart"
    if (out / "tinyllava.json").is_file():
        return out
    spec = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())["model"]
    return _save_fresh(spec, out)


def _save_fresh(model_spec: dict[str, Any], out: Path) -> Path:
    import torch

    from tinyllava.checkpoint.save import save_checkpoint
    from tinyllava.model.build import build_fresh
    from tinyllava.plugins.registry import get_registry
    from tinyllava.spec.runspec import ModelSpec

    torch.manual_seed(0)
    spec = ModelSpec.model_validate(model_spec)
    built = build_fresh(get_registry(), spec)
    save_checkpoint(out, built.model, built.tokenizer, built.image_processor,
                    chat_template={"name": spec.chat_template.name, "options": spec.chat_template.options})
    return out


def reference_questions(data_dir: Path, n: int, max_new_tokens: int) -> list[dict[str, Any]]:
    records = json.loads((data_dir / "finetune.json").read_text())
    out = []
    for rec in records:
        if not rec.get("image"):
            continue
        text = rec["conversations"][0]["value"].replace("<image>", "").strip()
        out.append({"id": rec["id"], "prompt": text, "image": str(data_dir / "images" / rec["image"]),
                    "max_new_tokens": max_new_tokens})
        if len(out) == n:
            return out
    raise SystemExit(f"{data_dir / 'finetune.json'} has only {len(out)} image records; asked for {n}")


# -- the measured process ---------------------------------------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    """Runs under the source tree being measured; only uses APIs both old and new trees have."""
    t0 = time.perf_counter()
    import torch
    import transformers  # noqa: F401
    from transformers import PreTrainedModel  # noqa: F401  (transformers' model machinery: not load time)

    torch.set_num_threads(args.threads)
    imported = time.perf_counter() - t0
    import io

    from rich.console import Console

    from tinyllava.checkpoint import load_checkpoint
    from tinyllava.components.benchmark import EvalItem
    from tinyllava.eval.runner import generate_answers
    from tinyllava.inference import Pipeline

    dtype = None if args.dtype == "float32" else getattr(torch, args.dtype)
    t = time.perf_counter()
    loaded = load_checkpoint(Path(args.checkpoint), dtype=dtype)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    load_checkpoint(Path(args.checkpoint), dtype=dtype)
    load_warm_s = time.perf_counter() - t
    pipeline = Pipeline(loaded)
    if args.questions:
        raw = json.loads(Path(args.questions).read_text())
        items = [EvalItem(q["id"], q["prompt"], q["image"], q["max_new_tokens"]) for q in raw]
    else:
        from tinyllava.plugins.registry import get_registry

        bench = get_registry().create("benchmark", "shapes", {"per_category": max(1, args.n // 5)})
        items = bench.load_items(None, args.n)
    quiet = Console(file=io.StringIO())
    if args.warmup:
        generate_answers(pipeline, items[: args.batch_size], args.batch_size, quiet)
        cached = getattr(pipeline, "_pixels", None)
        if cached is not None:  # the warm-up's images must be preprocessed again when timed, as the first time
            cached.clear()
    profiler = None
    if args.profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    from chunked_rate import timed_answers  # this script's folder (sys.path[0])

    answers, seconds, best = timed_answers(items, args.batch_size,
                                           lambda part: generate_answers(pipeline, part, args.batch_size, quiet))
    if profiler is not None:
        import pstats

        profiler.disable()
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(25)
        Path(args.profile_to).write_text(stream.getvalue())
    Path(args.result).write_text(json.dumps({
        "import_s": imported, "load_s": load_s, "load_warm_s": load_warm_s, "seconds": seconds,
        "answers": len(answers), "answers_per_s": len(answers) / seconds, "threads": torch.get_num_threads(),
        "answers_per_s_best": best,
        "answer_chars": sum(len(a) for a in answers.values()),
        "sample": [answers[it.item_id] for it in items[:3]],
    }))


# -- the parent: interleaving, tables -----------------------------------------------------------------------------




def run_child(args: argparse.Namespace, label: str, checkpoint: Path, questions: Path | None, batch_size: int,
              src: Path | None) -> dict[str, Any]:
    result = args.work / "results" / f"{label}.json"
    log = args.work / "logs" / f"{label}.log"
    result.parent.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--checkpoint", str(checkpoint),
           "--batch-size", str(batch_size), "--result", str(result), "--threads", str(args.threads),
           "--n", str(args.n), "--dtype", args.dtype]
    if questions is not None:
        cmd += ["--questions", str(questions)]
    if not args.no_warmup:
        cmd.append("--warmup")
    if args.profile:
        cmd += ["--profile-to", str(args.work / "profiles" / f"{label}.txt")]
        (args.work / "profiles").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": checkout_pythonpath(src), "OMP_NUM_THREADS": str(args.threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with open(log, "w") as handle:
        code = subprocess.call(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=args.work)
    if code != 0 or not result.is_file():
        raise SystemExit(f"run {label} failed (exit {code}); log {log}:\n{log.read_text()[-3000:]}")
    return json.loads(result.read_text())


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def summarise(runs: list[dict[str, Any]], compare: bool) -> list[dict[str, Any]]:
    rows = []
    keys = sorted({(r["workload"], r["batch_size"]) for r in runs}, key=lambda k: (WORKLOADS.index(k[0]), k[1]))
    for workload, bs in keys:
        mine = [r for r in runs if r["workload"] == workload and r["batch_size"] == bs and r["tree"] == "this"]
        row: dict[str, Any] = {
            "workload": workload, "batch_size": bs,
            "answers_per_s": statistics.median(r["answers_per_s"] for r in mine),
            "best_answers_per_s": max(r["answers_per_s_best"] for r in mine),
            "load_s": statistics.median(r["load_s"] for r in mine),
            "load_warm_s": statistics.median(r["load_warm_s"] for r in mine),
            "import_s": statistics.median(r["import_s"] for r in mine),
        }
        if workload == "reference":
            row["vs_original_batch1"] = [row["best_answers_per_s"] / o for o in ORIGINAL_BATCH1]
        if compare:
            other = [r for r in runs if r["workload"] == workload and r["batch_size"] == bs and r["tree"] == "src"]
            pairs = list(zip(mine, other, strict=False))
            row["src_answers_per_s"] = statistics.median(r["answers_per_s"] for r in other)
            row["src_load_s"] = statistics.median(r["load_s"] for r in other)
            row["src_best_answers_per_s"] = max(r["answers_per_s_best"] for r in other)
            row["speedup"] = _geomean([a["answers_per_s"] / b["answers_per_s"] for a, b in pairs])
            row["best_speedup"] = row["best_answers_per_s"] / row["src_best_answers_per_s"]
            row["load_speedup"] = _geomean([b["load_s"] / a["load_s"] for a, b in pairs])
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]], compare: bool, n: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"inference throughput (answers/s: median over runs of {n} questions; best: the fastest chunk "
                        "of >= 50 questions in any run; x: geometric mean of interleaved pairs, best/best)")
    for col in ("workload", "batch", "answers/s", "best", "load s", "warm load s", "best vs original b1"):
        table.add_column(col, justify="right")
    if compare:
        for col in ("--src answers/s", "--src best", "x answers/s", "x best", "--src load s", "x load"):
            table.add_column(col, justify="right")
    for r in rows:
        vs = "-" if "vs_original_batch1" not in r else "{:.2f}-{:.2f}x".format(*sorted(r["vs_original_batch1"]))
        cells = [r["workload"], str(r["batch_size"]), f"{r['answers_per_s']:.2f}", f"{r['best_answers_per_s']:.2f}",
                 f"{r['load_s']:.3f}", f"{r['load_warm_s']:.3f}", vs]
        if compare:
            cells += [f"{r['src_answers_per_s']:.2f}", f"{r['src_best_answers_per_s']:.2f}", f"{r['speedup']:.2f}",
                      f"{r['best_speedup']:.2f}", f"{r['src_load_s']:.3f}", f"{r['load_speedup']:.2f}"]
        table.add_row(*cells)
    Console(width=200).print(table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=os.environ.get("DATA_DIR"),
                   help="the reference workload's data: finetune.json, images/, models/ (default $DATA_DIR)")
    p.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 16, 64])
    p.add_argument("--n", type=int, default=200, help="questions per workload")
    p.add_argument("--max-new-tokens", type=int, default=16, help="reference workload: new tokens per answer")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                   help="compute dtype of the loaded model (the CPU default is float32)")
    p.add_argument("--repeat", type=int, default=1, help="interleaved repetitions")
    p.add_argument("--src", type=Path, default=None, help="also run another checkout's code and report ratios")
    p.add_argument("--shapes-checkpoint", type=Path, default=None,
                   help="a trained quickstart-like checkpoint (default: the quickstart model, random weights)")
    p.add_argument("--reference-checkpoint", type=Path, default=None,
                   help="default: the reference models assembled into a checkpoint in the work folder")
    p.add_argument("--no-warmup", action="store_true", help="no warm-up batch before timing")
    p.add_argument("--profile", action="store_true", help="cProfile each timed generation (work/profiles/)")
    p.add_argument("--work", type=Path, default=None, help="working folder (default: a new temporary one)")
    p.add_argument("--json", type=Path, default=None, help="write the summary here too")
    # child mode
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", help=argparse.SUPPRESS)
    p.add_argument("--questions", help=argparse.SUPPRESS)
    p.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--warmup", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--profile-to", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child(args)
        return
    if "reference" in args.workloads and args.reference_checkpoint is None and args.data_dir is None:
        raise SystemExit("the reference workload needs --data-dir (or DATA_DIR): finetune.json, images/, models/")
    args.work = (args.work or Path(tempfile.mkdtemp(prefix="tinyllava-infer-"))).resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    workloads: dict[str, tuple[Path, Path | None]] = {}
    if "reference" in args.workloads:
        ckpt = args.reference_checkpoint or reference_checkpoint(Path(args.data_dir), args.work)
        questions = args.work / "reference-questions.json"
        questions.write_text(json.dumps(reference_questions(Path(args.data_dir), args.n, args.max_new_tokens)))
        workloads["reference"] = (ckpt, questions)
    if "shapes" in args.workloads:
        workloads["shapes"] = (args.shapes_checkpoint or shapes_checkpoint(args.work), None)
    trees: list[tuple[str, Path | None]] = [("this", None)] + ([("src", args.src)] if args.src else [])
    runs = []
    for rep in range(args.repeat):
        for name, (ckpt, questions) in workloads.items():
            for bs in args.batch_sizes:
                order = trees if rep % 2 == 0 else trees[::-1]
                for tree, src in order:
                    label = f"{name}-b{bs}-{tree}-{rep}"
                    raw = run_child(args, label, ckpt, questions, bs, src)
                    raw.update(workload=name, batch_size=bs, tree=tree, rep=rep)
                    runs.append(raw)
                    print(f"{label}: {raw['answers_per_s']:.2f} answers/s "
                          f"(best chunk {raw['answers_per_s_best']:.2f}), "
                          f"load {raw['load_s']:.3f}s "
                          f"(warm {raw['load_warm_s']:.3f}s)", flush=True)
    rows = summarise(runs, compare=args.src is not None)
    print_table(rows, compare=args.src is not None, n=args.n)
    summary = {"rows": rows, "runs": runs, "threads": args.threads, "n": args.n, "dtype": args.dtype,
               "work": str(args.work)}
    (args.work / "summary.json").write_text(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    print(f"work folder: {args.work}")


if __name__ == "__main__":
    main()
