"""Training throughput of the ORIGINAL TinyLLaVA Factory on the reference workload (one stage, one run).

Runs the original's own entry point, `tinyllava.train.train.train()` (its argument dataclasses, training recipes,
`LLaVATrainer`, dataset, collator and save code), from a checkout given with `--src`, with the hyper-parameters of
`/work/shared/bench/{pretrain,finetune,finetune-lora}.yaml` turned into its command-line flags. The only additions
are the launch-time shims of `tlf_shims.py` and a TrainerCallback that times every optimizer step.

Run it with the python of the venv made by `setup.sh`:

    VENV/bin/python benchmarks/original/run_training.py --src CHECKOUT --data-dir DATA --stage pretrain --out OUT
    VENV/bin/python benchmarks/original/run_training.py --src CHECKOUT --data-dir DATA --stage finetune --out OUT \\
        [--pretrained OUT_OF_A_PRETRAIN/tlf-pretrain]

Figures (as in benchmarks/train_throughput.py): samples/s = samples of the steps after `--warmup` / wall time from
the end of step `--warmup` to the end of the last step; step ms = median of those steps' wall times (optimizer step
end to optimizer step end: data loading, forward, backward, optimizer); start-up s = process start -> first step
begins; peak RSS of the measured process. Every measured run is a fresh child process.

finetune and lora start from a pretrain checkpoint of the original (its component layout: language_model/,
vision_tower/, connector/): `--pretrained DIR`, else OUT/prep-pretrain/tlf-pretrain, made once by an unmeasured
`--prep-steps`-step pretrain run and reused afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import tlf_shims  # noqa: E402  (the folder is on sys.path only now)

# checkpoint folder names: the original decides the save format from them ('finetune' in output_dir -> one HF
# model folder; load_pretrained_model takes the LoRA branch when 'lora' is in the path)
OUT_NAMES = {"pretrain": "tlf-pretrain", "finetune": "tlf-finetune", "lora": "tlf-lora-finetune"}


def stage_flags(stage: str, data: Path, clip: Path, out_dir: Path, steps: int, pretrained: Path | None,
                args: argparse.Namespace) -> list[str]:
    """The original's train.py flags for one stage of the reference workload (pretrain.yaml etc.).

    Taken from the original's scripts/train/{pretrain,finetune,lora/finetune_lora}.sh, with the workload's
    values where they differ (tiny local models, fp32, sdpa, batch 8 on one process, 50 steps, LoRA r32/a64,
    no DeepSpeed, no tensorboard, in-process data loading on a 2-core CPU).
    """
    models = data / "models"
    flags = {
        "model_name_or_path": models / "tinyllama-tiny",  # 'tinyllama' in the path picks its LLM plugin
        "vision_tower": clip,                               # models/clip-vit-tiny re-keyed; 'clip' picks the tower
        "connector_type": "mlp2x_gelu",                    # connector mlp, depth 2
        "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
        "image_aspect_ratio": "square", "is_multimodal": True, "lazy_preprocess": True,
        "attn_implementation": "sdpa",                     # scripts: flash_attention_2 (CUDA only)
        "model_max_length": 2048, "tokenizer_use_fast": False,
        "fp16": False, "bf16": False, "tf32": False,       # scripts: --fp16 True; the workload is fp32
        "use_cpu": True,
        "tune_type_vision_tower": "frozen", "tune_vision_tower_from_layer": 0, "tune_type_connector": "full",
        "num_train_epochs": 1, "max_steps": steps,
        "per_device_train_batch_size": args.batch_size, "gradient_accumulation_steps": 1,
        "weight_decay": 0.0, "warmup_ratio": 0.03, "lr_scheduler_type": "cosine", "max_grad_norm": 1.0,
        "logging_steps": 1, "gradient_checkpointing": True,
        "dataloader_num_workers": args.dataloader_workers,  # scripts: 8
        "report_to": "none", "evaluation_strategy": "no",
        "save_strategy": "steps", "save_steps": 100000, "save_total_limit": 1,
        "seed": args.seed, "output_dir": out_dir,
        "group_by_modality_length": args.group_by_modality_length,
    }
    if stage == "pretrain":
        flags.update(data_path=data / "pretrain.json", image_folder=data / "images", conv_version="pretrain",
                     tune_type_llm="frozen", learning_rate=1e-3, training_recipe="common")
    else:
        assert pretrained is not None
        flags.update(data_path=data / "finetune.json", image_folder=data / "images", conv_version="llama",
                     pretrained_model_path=pretrained)
        if stage == "finetune":
            flags.update(tune_type_llm="full", learning_rate=2e-5, training_recipe="common")
        else:
            flags.update(tune_type_llm="lora", learning_rate=2e-4, training_recipe="lora",
                         lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=0.05, lora_bias="none")
    argv = []
    for key, value in flags.items():
        argv += [f"--{key}", str(value)]
    return argv + list(args.extra or [])


# -- the measured process -----------------------------------------------------------------------------------------


def seconds_since_process_start() -> float:
    """Wall seconds since this process was created (Linux: /proc/self/stat starttime vs CLOCK_BOOTTIME)."""
    try:
        with open("/proc/self/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        start = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - start)
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


def child(args: argparse.Namespace) -> int:
    started = time.perf_counter() - seconds_since_process_start()
    import resource

    import torch

    torch.set_num_threads(args.threads)
    tlf_shims.install(args.src)
    import importlib

    from transformers import TrainerCallback

    tlf_train = importlib.import_module("tinyllava.train.train")  # the package re-exports train(): not `import as`

    timings: dict[str, list[float]] = {"step_begin": [], "step_end": [], "losses": [], "grad_norms": [],
                                       "samples": [], "text_tokens": []}
    pending = {"samples": 0, "text_tokens": 0}

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            timings["step_begin"].append(time.perf_counter() - started)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            timings["step_end"].append(time.perf_counter() - started)
            timings["samples"].append(pending["samples"])
            timings["text_tokens"].append(pending["text_tokens"])
            pending.update(samples=0, text_tokens=0)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                timings["losses"].append(float(logs["loss"]))
                if logs.get("grad_norm") is not None:
                    timings["grad_norms"].append(float(logs["grad_norm"]))

    base = tlf_train.LLaVATrainer

    class TimedLLaVATrainer(base):  # type: ignore[misc, valid-type]
        def __init__(self, *a: Any, **kw: Any) -> None:
            kw["callbacks"] = [*(kw.get("callbacks") or []), StepTimer()]
            super().__init__(*a, **kw)

        def training_step(self, model: Any, inputs: dict[str, Any]) -> Any:
            ids, mask = inputs.get("input_ids"), inputs.get("attention_mask")
            if ids is not None:
                pending["samples"] += int(ids.shape[0])
                pending["text_tokens"] += int(mask.sum()) if mask is not None else int(ids.numel())
            return super().training_step(model, inputs)

    tlf_train.LLaVATrainer = TimedLLaVATrainer
    sys.argv = [str(Path(args.src) / "tinyllava" / "train" / "train.py"), *args.train_args]
    tlf_train.train()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(args.result).write_text(json.dumps({
        **timings, "startup_s": timings["step_begin"][0] if timings["step_begin"] else None,
        "peak_rss_mb": peak_mb, "threads": torch.get_num_threads(), "shims": tlf_shims.APPLIED,
        "train_argv": args.train_args,
    }))
    return 0


# -- the driver ---------------------------------------------------------------------------------------------------


def summarise(raw: dict[str, Any], warmup: int, batch_size: int) -> dict[str, Any]:
    ends = raw["step_end"]
    if len(ends) <= warmup + 1:
        raise SystemExit(f"only {len(ends)} step(s) ran; need more than --warmup {warmup} + 1")
    span = ends[-1] - ends[warmup]
    steps_s = [b - a for a, b in zip(ends[warmup:-1], ends[warmup + 1:], strict=True)]
    samples = raw["samples"][warmup + 1:]
    losses = raw["losses"]
    return {
        "samples_per_s": sum(samples) / span,
        "samples_per_s_nominal": batch_size * len(steps_s) / span,  # 8 x steps / time, as the brief defines it
        "step_ms_median": 1000 * statistics.median(steps_s),
        "startup_s": raw["startup_s"],
        "peak_rss_mb": raw["peak_rss_mb"],
        "steps": len(ends),
        "steady_steps": len(steps_s),
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "losses_finite": all(x == x and abs(x) != float("inf") for x in losses),
        "threads": raw["threads"],
        "shims": raw["shims"],
    }


def run_child(args: argparse.Namespace, stage: str, steps: int, out_dir: Path, pretrained: Path | None,
              result: Path, log: Path | None) -> dict[str, Any]:
    clip = tlf_shims.compat_clip(args.data_dir / "models" / "clip-vit-tiny", args.out / "models-tf440")
    train_args = stage_flags(stage, args.data_dir, clip, out_dir, steps, pretrained, args)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--src", str(args.src), "--threads",
           str(args.threads), "--result", str(result), "--train-args", *train_args]
    env = {**os.environ, **tlf_shims.offline_env(args.threads)}
    env.pop("PYTHONPATH", None)  # only the checkout and the stubs, put on sys.path by the shims
    print(f"[{stage}] {steps} steps -> {out_dir}", flush=True)
    if log is None:
        code = subprocess.call(cmd, env=env, cwd=out_dir.parent)
    else:
        with open(log, "w") as handle:
            code = subprocess.call(cmd, env=env, cwd=out_dir.parent, stdout=handle, stderr=subprocess.STDOUT)
    if code != 0 or not result.is_file():
        tail = log.read_text()[-3000:] if log is not None else ""
        raise SystemExit(f"{stage} run failed (exit {code}){'; log ' + str(log) if log else ''}\n{tail}")
    return json.loads(result.read_text())


def is_pretrain_checkpoint(path: Path) -> bool:
    return all((path / part / "pytorch_model.bin").is_file() for part in ("language_model", "vision_tower",
                                                                          "connector"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, required=True, help="a TinyLLaVA Factory checkout (main @53f12c7)")
    p.add_argument("--data-dir", type=Path, help="the workload: pretrain.json, finetune.json, images/, models/")
    p.add_argument("--stage", choices=list(OUT_NAMES), help="pretrain | finetune | lora")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="output folder (checkpoint, log, result JSON)")
    p.add_argument("--pretrained", type=Path, default=None,
                   help="finetune/lora: a pretrain checkpoint of the original (default: OUT/prep-pretrain/...)")
    p.add_argument("--prep-steps", type=int, default=5, help="steps of the automatic unmeasured pretrain run")
    p.add_argument("--warmup", type=int, default=3, help="steps left out of the steady-state figures")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--lora-r", type=int, default=32)
    p.add_argument("--lora-alpha", type=int, default=64)
    p.add_argument("--dataloader-workers", type=int, default=0)
    p.add_argument("--group-by-modality-length", action="store_true",
                   help="the original finetune script's sampler (off in the workload spec)")
    p.add_argument("--quiet", action="store_true", help="the training log goes to OUT/train-STAGE.log only")
    p.add_argument("--extra", nargs=argparse.REMAINDER, help="more flags for the original's train.py, verbatim")
    # the measured process
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--train-args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args)
    if args.data_dir is None or args.stage is None or args.out is None:
        raise SystemExit("--data-dir, --stage and --out are required")
    args.src = tlf_shims.check_checkout(args.src)
    args.data_dir = args.data_dir.expanduser().resolve()
    if not (args.data_dir / "finetune.json").is_file():
        raise SystemExit(f"--data-dir {args.data_dir}: no finetune.json (make it with the bench generator)")
    out = args.out = args.out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    if "lora" in str(out).lower() or "finetune" in str(out).lower():
        print("note: the original picks save/load formats by 'lora'/'finetune' in paths; --out contains one",
              flush=True)

    pretrained = None
    if args.stage != "pretrain":
        pretrained = args.pretrained.expanduser().resolve() if args.pretrained else None
        if pretrained is None:
            prep = out / "prep-pretrain" / OUT_NAMES["pretrain"]
            if not is_pretrain_checkpoint(prep):
                prep.parent.mkdir(parents=True, exist_ok=True)
                print(f"an unmeasured {args.prep_steps}-step pretrain run makes the starting checkpoint ...",
                      flush=True)
                run_child(args, "pretrain", args.prep_steps, prep, None, prep.parent / "result.json",
                          prep.parent / "train.log")
            pretrained = prep
        if not is_pretrain_checkpoint(pretrained):
            raise SystemExit(f"{pretrained}: not a pretrain checkpoint of the original "
                             "(language_model/, vision_tower/, connector/ with pytorch_model.bin)")

    ckpt = out / OUT_NAMES[args.stage]
    raw = run_child(args, args.stage, args.steps, ckpt, pretrained, out / f"raw-{args.stage}.json",
                    out / f"train-{args.stage}.log" if args.quiet else None)
    figures = summarise(raw, args.warmup, args.batch_size)
    report = {"stage": args.stage, "src": str(args.src), "data_dir": str(args.data_dir), "checkpoint": str(ckpt),
              "pretrained": str(pretrained) if pretrained else None, "warmup": args.warmup, **figures, "raw": raw}
    result = out / f"result-{args.stage}.json"
    result.write_text(json.dumps(report, indent=2))
    print(f"original {args.stage}: {figures['samples_per_s']:.2f} samples/s, step {figures['step_ms_median']:.0f} ms "
          f"(median of {figures['steady_steps']} after {args.warmup} warm-up), start-up {figures['startup_s']:.1f} s, "
          f"peak RSS {figures['peak_rss_mb']:.0f} MB, loss {figures['first_loss']} -> {figures['final_loss']}")
    print(f"JSON: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
