"""Training throughput on the reference workload, through the real `tinyllava train` code path.

Each measured run is a fresh process that calls the CLI's train command on one stage's spec (pretrain,
finetune, LoRA finetune; `${DATA_DIR}` substituted), with a few observers added from outside:

- samples/s and real (non-pad) tokens/s over the steady-state steps (after `--warmup` steps), from the
  wall time between optimizer steps (data loading, forward, backward, optimizer: everything);
- padding fraction (pad slots / all slots of the batches the model received, padded or packed);
- images encoded by the vision tower (cached features and text-only samples do not count);
- peak RSS of the process; start-up time (process start -> first step begins); median step time.

Runs are interleaved (stage by stage, variant by variant, `--repeat` times) so that a busy machine slows
every variant alike; compare variants by their ratio. Examples:

    python benchmarks/train_throughput.py --data-dir /tmp/bench/data
    python benchmarks/train_throughput.py --data-dir D --stages finetune \\
        --ab stages.0.gradient_checkpointing=false --repeat 3
    python benchmarks/train_throughput.py --data-dir D --src /tmp/old-checkout   # another checkout's code

Finetune and LoRA start from a pretrain checkpoint: the first measured pretrain run's, else one made
by a short unmeasured pretrain run.
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

from checkouts import checkout_pythonpath  # benchmarks/ is on sys.path: it is the script's folder

HERE = Path(__file__).resolve().parent
STAGES = {"pretrain": "pretrain.yaml", "finetune": "finetune.yaml", "lora": "finetune-lora.yaml"}
# TinyLLaVA Factory on this workload (2 cores, quiet, 2 threads, gradient checkpointing on), samples/s
ORIGINAL = {"pretrain": 18.8, "finetune": 11.6, "lora": 8.2}
FULL_LOGITS = "full_logits"  # a pseudo-override: the LM head at every position (the pre-change path)


# -- the measured process -------------------------------------------------------------------------------


class Meter:
    """Counts what the model receives in training and when each optimizer step begins and ends."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.pad_token_id: int | None = None
        self.step_begin: list[float] = []
        self.step_end: list[float] = []
        self.step_cpu: list[float] = []  # this process's CPU seconds (all its threads) at each step's end
        self.startup_cpu: float | None = None  # CPU seconds from process start to the first step
        self.samples: list[int] = []
        self.real_tokens: list[int] = []
        self.slots: list[int] = []
        self.supervised: list[int] = []
        self.images_encoded = 0
        self.images_in_batches = 0
        self.losses: list[float] = []
        self.active = False
        self._step = {"samples": 0, "real": 0, "slots": 0, "supervised": 0}

    def batch(self, kwargs: dict[str, Any], image_seq_len: int) -> None:
        import torch

        from tinyllava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX

        ids = kwargs.get("input_ids")
        if not self.active or ids is None:
            return
        mask, labels, positions = kwargs.get("attention_mask"), kwargs.get("labels"), kwargs.get("position_ids")
        rows, width = ids.shape
        if mask is not None and mask.dim() == 2:
            real_per_row = mask.sum(dim=1)
        else:  # packed rows: the real tokens end where the trailing padding (pad id, untrained) begins
            pad = ids == self.pad_token_id
            if labels is not None:
                pad &= labels == IGNORE_INDEX
            trailing = torch.flip(torch.cumprod(torch.flip(pad.long(), dims=[1]), dim=1), dims=[1])
            real_per_row = width - trailing.sum(dim=1)
        if positions is not None and positions.dim() == 2 and positions.shape == ids.shape:
            in_real = torch.arange(width).unsqueeze(0) < real_per_row.unsqueeze(1)
            samples = int(((positions == 0) & in_real).sum())
        else:
            samples = rows
        self._step["samples"] += samples
        self._step["real"] += int(real_per_row.sum())
        self._step["slots"] += rows * width
        if labels is not None:
            self._step["supervised"] += int((labels[:, 1:] != IGNORE_INDEX).sum())
        self.images_in_batches += int((ids == IMAGE_TOKEN_INDEX).sum()) // max(image_seq_len, 1)

    def end_step(self) -> None:
        self.step_end.append(time.perf_counter())
        self.step_cpu.append(time.process_time())
        self.samples.append(self._step["samples"])
        self.real_tokens.append(self._step["real"])
        self.slots.append(self._step["slots"])
        self.supervised.append(self._step["supervised"])
        self._step = dict.fromkeys(self._step, 0)


def _install_observers(meter: Meter, profile: Path | None, profile_steps: tuple[int, int]) -> None:
    """Wrap the trainer the runner builds so that the meter sees every batch and step."""
    import torch
    from transformers import TrainerCallback

    import tinyllava.training.trainer as trainer_module

    base = trainer_module.TinyLlavaTrainer

    class MeterCallback(TrainerCallback):
        def __init__(self) -> None:
            self.profiler: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            meter.active = True

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            meter.step_begin.append(time.perf_counter())
            if meter.startup_cpu is None:
                meter.startup_cpu = time.process_time()
            if profile is not None and state.global_step == profile_steps[0]:
                self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                                       record_shapes=False)
                self.profiler.__enter__()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            meter.end_step()
            if self.profiler is not None and state.global_step == profile_steps[1]:
                self.profiler.__exit__(None, None, None)
                _write_profile(self.profiler, profile, profile_steps[1] - profile_steps[0])
                self.profiler = None

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                meter.losses.append(float(logs["loss"]))

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            meter.active = False

    class MeasuredTrainer(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), MeterCallback()]
            super().__init__(*args, **kwargs)
            meter.pad_token_id = getattr(self.data_collator, "pad_token_id", None)
            model = self.model
            seq_len = int(getattr(model.config, "image_seq_len", 1) or 1)
            model.register_forward_pre_hook(
                lambda m, a, kw: meter.batch(kw, seq_len) if m.training else None, with_kwargs=True)
            tower = getattr(model, "vision_tower", None)
            if tower is not None:
                def count(module: Any, args: tuple, kwargs: dict) -> None:
                    pixels = args[0] if args else kwargs.get("pixel_values")
                    if meter.active and pixels is not None:
                        meter.images_encoded += int(pixels.shape[0])
                tower.register_forward_pre_hook(count, with_kwargs=True)

    trainer_module.TinyLlavaTrainer = MeasuredTrainer


def _write_profile(profiler: Any, folder: Path, steps: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    averages = profiler.key_averages()
    (folder / "by_self_cpu.txt").write_text(f"{steps} steps\n" + averages.table(
        sort_by="self_cpu_time_total", row_limit=30))
    (folder / "by_total_cpu.txt").write_text(f"{steps} steps\n" + averages.table(
        sort_by="cpu_time_total", row_limit=30))


def child(args: argparse.Namespace) -> int:
    """Run one stage's spec through the CLI's train command and write the meter's figures as JSON."""
    started_epoch = float(os.environ.get("TINYLLAVA_BENCH_T0", time.time()))
    started = time.perf_counter() - (time.time() - started_epoch)
    import resource

    meter = Meter(started)
    profile = Path(args.profile_dir) if args.profile_dir else None
    try:  # the observers import transformers' Trainer: as the CLI would, first (a checkout without it: plainly)
        from tinyllava.training.lean_imports import import_training_stack
    except ImportError:
        pass
    else:
        import_training_stack()
    _install_observers(meter, profile, (args.warmup, args.warmup + args.profile_steps))
    if args.full_logits:
        from tinyllava.model.assembly import TinyLlavaForConditionalGeneration

        TinyLlavaForConditionalGeneration.supervised_head_only = False
    from tinyllava_cli.commands.train import train

    code = train(Path(args.spec), list(args.set or []), resume=False)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {
        "exit_code": code,
        "startup_s": (meter.step_begin[0] - started) if meter.step_begin else None,
        "startup_cpu_s": meter.startup_cpu,
        "step_begin": [t - started for t in meter.step_begin],
        "step_end": [t - started for t in meter.step_end],
        "step_cpu": meter.step_cpu,
        "samples": meter.samples, "real_tokens": meter.real_tokens, "slots": meter.slots,
        "supervised_tokens": meter.supervised, "images_encoded": meter.images_encoded,
        "images_in_batches": meter.images_in_batches, "losses": meter.losses,
        "peak_rss_mb": peak_kb / 1024, "threads": _threads(),
    }
    Path(args.result).write_text(json.dumps(result))
    return code


def _threads() -> int:
    import torch

    return torch.get_num_threads()


# -- the driver -----------------------------------------------------------------------------------------


def summarise(raw: dict[str, Any], warmup: int) -> dict[str, Any]:
    """Steady-state figures of one run: the steps after `warmup`, timed from the end of step `warmup`."""
    ends, samples = raw["step_end"], raw["samples"]
    if len(ends) <= warmup + 1:
        raise SystemExit(f"only {len(ends)} step(s) ran; need more than --warmup {warmup} + 1")
    span = ends[-1] - ends[warmup]
    steady = slice(warmup + 1, None)
    steps = [b - a for a, b in zip(ends[warmup:-1], ends[warmup + 1:], strict=True)]
    cpu = raw["step_cpu"]
    cpu_steps = [b - a for a, b in zip(cpu[warmup:-1], cpu[warmup + 1:], strict=True)]
    slots, real = sum(raw["slots"]), sum(raw["real_tokens"])
    return {
        "samples_per_s": sum(samples[steady]) / span,
        "real_tokens_per_s": sum(raw["real_tokens"][steady]) / span,
        "padding_fraction": 1 - real / slots if slots else 0.0,
        "images_encoded": raw["images_encoded"],
        "images_in_batches": raw["images_in_batches"],
        "peak_rss_mb": raw["peak_rss_mb"],
        "startup_s": raw["startup_s"],
        "startup_cpu_s": raw.get("startup_cpu_s"),
        "step_ms_median": 1000 * statistics.median(steps),
        "cpu_ms_median": 1000 * statistics.median(cpu_steps),
        "steps": len(ends),
        "samples": sum(samples),
        "final_loss": raw["losses"][-1] if raw["losses"] else None,
        "threads": raw["threads"],
    }




def _spec_file(specs: Path, stage: str, data_dir: Path, work: Path) -> Path:
    text = (specs / STAGES[stage]).read_text().replace("${DATA_DIR}", str(data_dir))
    out = work / "specs" / STAGES[stage]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


def run_once(spec: Path, overrides: list[str], args: argparse.Namespace, label: str, profile: Path | None = None,
             src: Path | None = None) -> dict[str, Any]:
    """One fresh process training one stage; returns its raw figures (and keeps its log)."""
    result = args.work / "results" / f"{label}.json"
    log = args.work / "logs" / f"{label}.log"
    result.parent.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    full_logits = FULL_LOGITS in overrides
    sets = [o for o in overrides if o != FULL_LOGITS]
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--spec", str(spec), "--result", str(result),
           "--warmup", str(args.warmup), "--profile-steps", str(args.profile_steps)]
    for item in sets:
        cmd += ["--set", item]
    if full_logits:
        cmd.append("--full-logits")
    if profile is not None:
        cmd += ["--profile-dir", str(profile)]
    env = {**os.environ, "PYTHONPATH": checkout_pythonpath(src), "TINYLLAVA_BENCH_T0": repr(time.time())}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    with open(log, "w") as handle:
        code = subprocess.call(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=args.work)
    if code != 0 or not result.is_file():
        tail = log.read_text()[-3000:]
        raise SystemExit(f"run {label} failed (exit {code}); log {log}:\n{tail}")
    return json.loads(result.read_text())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=os.environ.get("DATA_DIR"),
                   help="the workload's data: pretrain.json, finetune.json, images/, models/ (default $DATA_DIR)")
    p.add_argument("--specs", type=Path, default=HERE / "specs", help="folder with the three stage specs")
    p.add_argument("--stages", nargs="+", choices=list(STAGES), default=list(STAGES))
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: each spec's num_threads)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="spec override for every run, e.g. stages.0.gradient_checkpointing=false (repeatable)")
    p.add_argument("--ab", action="append", default=None, metavar="KEY=VALUE",
                   help=f"a B variant: these overrides on top of --set (repeatable); '{FULL_LOGITS}' runs the LM "
                        f"head at every position")
    p.add_argument("--repeat", type=int, default=1, help="interleaved repetitions of every stage x variant")
    p.add_argument("--steps", type=int, default=None, help="max_steps of every run (default: the spec's 50)")
    p.add_argument("--warmup", type=int, default=3, help="steps left out of the steady-state figures")
    p.add_argument("--work", type=Path, default=None, help="working folder (default: a new temporary one)")
    p.add_argument("--isolate", action="store_true",
                   help="every run in its own output folder (no cache shared with earlier runs)")
    p.add_argument("--src", type=Path, default=None, help="run another checkout's code (its core, CLI, plugins)")
    p.add_argument("--ab-src", type=Path, default=None,
                   help="a B variant that runs this checkout's code (e.g. the code before a change); "
                        "combines with --ab")
    p.add_argument("--profile", action="store_true", help="torch.profiler over --profile-steps steps of each run")
    p.add_argument("--profile-steps", type=int, default=3)
    p.add_argument("--json", type=Path, default=None, help="write every figure here (default: WORK/summary.json)")
    # the measured process
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--full-logits", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--profile-dir", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _run_overrides(args: argparse.Namespace, stage: str, label: str, init_from: Path | None) -> list[str]:
    out = args.work / ("runs-" + label if args.isolate else "runs")
    sets = [f"output_dir={out}", f"name={label}"]
    if args.threads:
        sets.append(f"num_threads={args.threads}")
    if args.steps:
        sets.append(f"stages.0.max_steps={args.steps}")
    if stage != "pretrain" and init_from is not None:
        sets.append(f"init_from={init_from}")
    return sets + list(args.set)


def _final(args: argparse.Namespace, label: str) -> Path:
    out = args.work / ("runs-" + label if args.isolate else "runs")
    return out / label / "stage0-pretrain" / "final"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args)
    if args.data_dir is None or not (Path(args.data_dir) / "finetune.json").is_file():
        raise SystemExit("--data-dir (or $DATA_DIR): a folder with the workload's pretrain.json, finetune.json, "
                         "images/ and models/ (made by the bench generator)")
    args.data_dir = Path(args.data_dir).resolve()
    args.stages = [s for s in STAGES if s in args.stages]  # pretrain first: its checkpoint starts the others
    if args.work is None:
        import tempfile

        args.work = Path(tempfile.mkdtemp(prefix="tinyllava-bench-"))
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    variants: dict[str, list[str]] = {"A": []}
    if args.ab or args.ab_src:
        variants["B"] = list(args.ab or [])
    sources = {"A": args.src, "B": args.ab_src or args.src}
    specs = {s: _spec_file(args.specs, s, args.data_dir, args.work) for s in STAGES}
    print(f"work folder: {args.work}", flush=True)

    init_from: Path | None = None
    if any(s != "pretrain" for s in args.stages) and "pretrain" not in args.stages:
        label = "prep-pretrain"
        print("an unmeasured pretrain run makes the finetune stages' starting checkpoint ...", flush=True)
        run_once(specs["pretrain"], [*_run_overrides(args, "pretrain", label, None), "stages.0.max_steps=5"],
                 args, label, src=args.src)
        init_from = _final(args, label)

    runs: list[dict[str, Any]] = []
    for rep in range(args.repeat):
        for stage in args.stages:
            for variant, extra in variants.items():
                label = f"{stage}-{variant}-{rep}"
                profile = args.work / "profiles" / label if args.profile else None
                raw = run_once(specs[stage], [*_run_overrides(args, stage, label, init_from), *extra], args, label,
                               profile, sources[variant])
                figures = summarise(raw, args.warmup)
                runs.append({"stage": stage, "variant": variant, "repeat": rep, "overrides": extra, **figures,
                             "raw": raw})
                print(f"{label}: {figures['samples_per_s']:.2f} samples/s, step {figures['step_ms_median']:.0f} ms, "
                      f"start-up {figures['startup_s']:.1f} s (CPU {figures['startup_cpu_s'] or 0:.1f} s), "
                      f"loss {figures['final_loss']}", flush=True)
                if stage == "pretrain" and init_from is None:
                    init_from = _final(args, label)

    summary = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "variants": variants, "original_samples_per_s": ORIGINAL, "runs": runs,
               "stages": aggregate(runs, args.stages, variants)}
    out = args.json or args.work / "summary.json"
    out.write_text(json.dumps(summary, indent=2))
    show(summary, args)
    print(f"JSON: {out}")
    return 0


def _geomean(values: list[float]) -> float:
    return statistics.geometric_mean(values) if values else float("nan")


def aggregate(runs: list[dict[str, Any]], stages: list[str], variants: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Per stage and variant: medians over repeats; B/A ratios from the interleaved pairs."""
    rows = []
    keys = ["samples_per_s", "real_tokens_per_s", "padding_fraction", "images_encoded", "peak_rss_mb",
            "startup_s", "startup_cpu_s", "step_ms_median", "cpu_ms_median", "final_loss"]
    for stage in stages:
        for variant in variants:
            mine = [r for r in runs if r["stage"] == stage and r["variant"] == variant]
            row: dict[str, Any] = {"stage": stage, "variant": variant, "repeats": len(mine)}
            for key in keys:
                values = [r[key] for r in mine if r[key] is not None]
                row[key] = statistics.median(values) if values else None
            row["vs_original"] = row["samples_per_s"] / ORIGINAL[stage]
            if variant != "A":
                pairs = [(a, b) for a in runs for b in mine
                         if a["stage"] == stage and a["variant"] == "A" and a["repeat"] == b["repeat"]]
                row["ratio_to_A"] = _geomean([b["samples_per_s"] / a["samples_per_s"] for a, b in pairs])
                row["cpu_ratio_to_A"] = _geomean([a["cpu_ms_median"] / b["cpu_ms_median"] for a, b in pairs])
            rows.append(row)
    return rows


def show(summary: dict[str, Any], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    ab = len(summary["variants"]) > 1
    table = Table(title="training throughput (steady state after "
                        f"{args.warmup} steps; median of {args.repeat} interleaved run(s))")
    cols = ["stage", "variant", "samples/s", "real tok/s", "padding", "images enc.", "peak RSS", "start-up",
            "start-up CPU", "step ms", "CPU ms", "vs original", *(["B/A", "B/A CPU"] if ab else []), "loss"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("stage", "variant") else "right")
    def num(row: dict[str, Any], key: str, fmt: str) -> str:
        return format(row[key], fmt) if row.get(key) is not None else "-"

    for row in summary["stages"]:
        table.add_row(
            row["stage"], row["variant"], num(row, "samples_per_s", ".2f"), num(row, "real_tokens_per_s", ".0f"),
            f"{100 * row['padding_fraction']:.1f}%", num(row, "images_encoded", ".0f"), f"{row['peak_rss_mb']:.0f} MB",
            f"{row['startup_s']:.2f} s", num(row, "startup_cpu_s", ".2f"), num(row, "step_ms_median", ".0f"),
            num(row, "cpu_ms_median", ".0f"),
            f"{row['vs_original']:.2f}x ({ORIGINAL[row['stage']]})",
            *([num(row, "ratio_to_A", ".3f"), num(row, "cpu_ratio_to_A", ".3f")] if ab else []),
            num(row, "final_loss", ".4f"),
        )
    console = Console(width=max(Console().width, 150))
    console.print(table)
    if ab:
        b_src = f" with the code of {args.ab_src}" if args.ab_src else ""
        console.print(f"variant B: {' '.join(summary['variants']['B']) or 'no override'}{b_src}")


if __name__ == "__main__":
    sys.exit(main())
