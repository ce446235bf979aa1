"""Kill anywhere, resume, and end with the uninterrupted run's weights, across both quickstart stages.

The quickstart's two stages (captions, then instructions), shrunk: the first trains the LLM through LoRA, the
second trains it in full from the first's merged result, so the chain crosses a LoRA -> full transition. One run
is SIGKILLed at 5 random steps (seeded), while the LoRA stage's final checkpoint merges its adapters, and between
the stages; each time `--resume` (in a fresh forked process) carries on, and the last one finishes. Both stages'
final weights must equal the uninterrupted run's, and no resume may retrain a step that was checkpointed.
"""

from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path

from rich.console import Console

from tinyllava.testing import tiny_run_spec
from tinyllava.testing.faults import killed_in_child
from tinyllava.testing.fuzz import report_dir

STEPS = (3, 3)  # per stage
QUIET = Console(quiet=True)


def _spec(root: Path, name: str):
    from tinyllava.spec.runspec import resolve_spec

    raw = tiny_run_spec(root, name=name, steps=STEPS[0], save_steps=1, num_images=8)
    raw["stages"][0].update(recipe="lora", tune={"llm": {"mode": "lora", "lora": {"r": 4}}, "vision_tower": "frozen",
                                                 "connector": "full"}, save_format="full")
    raw["stages"][1]["max_steps"] = STEPS[1]
    return resolve_spec(raw)


def _kill_at_global_step(step: int, trace: Path) -> None:
    """In this (forked) process: SIGKILL in the middle of training step `step` (counted across stages, from 1), after
    its forward pass and before the optimizer update; steps before it are checkpointed (save_steps 1)."""
    from tinyllava.training.trainer import TinyLlavaTrainer

    original = TinyLlavaTrainer.training_step

    def training_step(self, *args, **kwargs):
        offset = 0 if "stage0-" in str(self.args.output_dir) else STEPS[0]
        with open(trace, "a") as handle:  # which steps this process trained: a resume must not redo earlier ones
            handle.write(f"{offset + self.state.global_step + 1}\n")
        loss = original(self, *args, **kwargs)
        if offset + self.state.global_step + 1 == step:
            os.kill(os.getpid(), signal.SIGKILL)
        return loss

    TinyLlavaTrainer.training_step = training_step


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


def test_kill_at_random_steps_and_between_stages_then_resume_matches(tmp_path):
    from tinyllava.training import runner

    reference = _spec(tmp_path, "straight")
    runner.run_training(reference, console=QUIET)
    spec = _spec(tmp_path, "killed")
    steps = sorted(random.Random(17).sample(range(1, sum(STEPS) + 1), 5))
    log: list[str] = []

    def run(resume: bool) -> None:
        runner.run_training(spec, resume=resume, console=QUIET)

    for i, step in enumerate(steps):
        trace = tmp_path / f"trace-{i}.txt"

        def killed_run(step: int = step, resume: bool = i > 0, trace: Path = trace) -> None:
            _kill_at_global_step(step, trace)
            run(resume)

        assert killed_in_child(killed_run, []), f"the run was not killed at step {step}"
        trained = [int(x) for x in trace.read_text().split()]
        resumed_at = 1 if i == 0 else (STEPS[0] + 1 if "between" in log[-1] else steps[i - 1])
        assert trained == list(range(resumed_at, step + 1)), f"run {i} trained {trained}, not {resumed_at}..{step}"
        log.append(f"killed at step {step}")
        if step <= STEPS[0] < (steps[i + 1] if i + 1 < len(steps) else sum(STEPS) + 1):
            # stage 0 trained: kill while its final checkpoint folds the LoRA adapters into the weights
            def merging(resume: bool = True) -> None:
                from tinyllava.checkpoint import merge

                original = merge.merge_checkpoint

                def die_after_merging(*args, **kwargs):
                    original(*args, **kwargs)
                    os.kill(os.getpid(), signal.SIGKILL)

                merge.merge_checkpoint = die_after_merging
                run(resume)

            assert killed_in_child(merging, []), "the run was not killed while merging"
            assert not (spec.run_dir() / "stage0-align" / "final").exists()
            log.append("killed while merging stage 0's adapters")
            # and once more between the stages: stage 0 saved, stage 1 not started
            def between(resume: bool = True) -> None:
                loaded = runner._load_merged

                def die_after_loading(path, registry):
                    if "stage0-" in str(path):
                        os.kill(os.getpid(), signal.SIGKILL)
                    return loaded(path, registry)

                runner._load_merged = die_after_loading
                run(resume)

            assert killed_in_child(between, []), "the run was not killed between the stages"
            log.append("killed between the stages")
    run(True)  # the last resume runs to the end
    log.append("resumed to the end")

    for stage in ("stage0-align", "stage1-instruct"):
        expected = _weights(reference.run_dir() / stage / "final")
        got = _weights(spec.run_dir() / stage / "final")
        assert _same(expected, got), f"{stage}: the resumed weights differ from the uninterrupted run's ({log})"
    manifest = json.loads((spec.run_dir() / "stage0-align" / "final" / "tinyllava.json").read_text())
    assert manifest["merged_adapters"] == ["llm"]  # the LoRA stage's adapters were merged; stage 1 trained in full
    kills = [entry for entry in log if entry.startswith("killed")]
    assert len(kills) >= 6
    report = {"kills": kills, "stages_identical": 2, "steps_per_stage": list(STEPS)}
    (report_dir() / "reliability-step-kills.json").write_text(json.dumps(report, indent=2))
    print(f"\nkill-anywhere resume: {len(kills)} kills ({', '.join(kills)}), weights identical to the "
          f"uninterrupted run in both stages")
