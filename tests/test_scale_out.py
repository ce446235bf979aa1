"""Real runs through the CLI for every way of scaling a stage out: two processes (torchrun, gloo),
DeepSpeed ZeRO-2 in one process, LoRA and QLoRA (ZeRO-3 in one and two processes: tests/test_zero3_mixed.py).
Each ends with a checkpoint that loads
without DeepSpeed and generates, and each resumes after a SIGKILL to the very weights of an
uninterrupted run: every run here is float32 on a CPU with a fixed data order and saved RNG state, and
the frozen weights (4-bit ones included) are rebuilt deterministically from the stage's start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tinyllava.testing import tiny_run_spec
from tinyllava.testing.runs import kill_tree, parameter_rows
from tinyllava.testing.timeouts import SUBPROCESS_TIMEOUT_S
from tinyllava.training.runner import last_trainer_checkpoint

EXE = str(Path(sys.executable).parent / "tinyllava")
ENV = {**os.environ, "COLUMNS": "250", "OMP_NUM_THREADS": "1"}
STEPS, SAVE_STEPS = 6, 2

TUNES = {
    "ddp": {"llm": "full", "vision_tower": "full", "connector": "full"},
    "zero2": {"llm": "full", "vision_tower": "frozen", "connector": "full"},
    "lora": {"llm": {"mode": "lora", "lora": {"r": 4, "alpha": 8}},
             "vision_tower": {"mode": "lora", "lora": {"r": 2, "alpha": 4}}, "connector": "full"},
    "qlora": {"llm": {"mode": "qlora", "lora": {"r": 4, "alpha": 8}}, "vision_tower": "frozen", "connector": "full"},
}
EXTRA = {
    # feature_layer -2 (TINY_MODEL's default) and a trained tower: DDP must cope without find_unused_parameters
    "ddp": {"ddp_find_unused_parameters": False},
    "zero2": {"deepspeed": "zero2"},
    "lora": {"recipe": "lora"},
    "qlora": {"recipe": "qlora"},
}
NPROC = {"ddp": 2}
SEPARATE_PROCESS = {"ddp", "zero2"}  # process groups and DeepSpeed state stay out of the test process


def cli(*args: str, timeout: int = SUBPROCESS_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=timeout, env=ENV)


def failure(proc: subprocess.CompletedProcess) -> str:
    """What went wrong in a CLI run: error lines first (torchrun buries a worker's message), then the tails."""
    text = proc.stdout + proc.stderr
    errors = [line for line in text.splitlines() if "error" in line.lower()]
    return "\n".join(errors[:20]) + "\n---\n" + proc.stdout[-2000:] + proc.stderr[-2000:]


def mode_spec(root: Path, mode: str) -> Path:
    raw = tiny_run_spec(root / "runs", steps=STEPS, save_steps=SAVE_STEPS, num_images=24)
    raw["stages"] = raw["stages"][1:]
    raw["stages"][0].update({"tune": TUNES[mode], **EXTRA[mode]})
    if mode == "ddp":  # images in every sample: with text-only ones DDP does need find_unused_parameters
        raw["stages"][0]["data"]["dataset"]["text_only_fraction"] = 0.0
    path = root / f"{mode}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def train_args(spec: Path, name: str, mode: str, *extra: str) -> list[str]:
    nproc = ["--nproc", str(NPROC[mode])] if mode in NPROC else []
    return ["train", str(spec), "--set", f"name={name}", *nproc, *extra]


def final_dir(root: Path, name: str) -> Path:
    return root / "runs" / name / "stage0-instruct" / "final"


def train_here(spec: Path, name: str, resume: bool = False) -> str:
    """What `tinyllava train` does, in this process (no fresh interpreter to pay for); returns the output."""
    from rich.console import Console

    from tinyllava.spec import load_spec
    from tinyllava.training.runner import run_training

    with open(os.devnull, "w") as sink:
        console = Console(record=True, width=250, file=sink)
        result = run_training(load_spec(spec, [f"name={name}"]), resume=resume, console=console)
    return console.export_text() + f"\nstage instruct: {result.stages[-1].steps} steps"


@pytest.fixture(scope="module")
def root(tmp_path_factory, deepspeed_ops) -> Path:
    return tmp_path_factory.mktemp("scale")


@pytest.fixture(scope="module")
def straight(root):
    """One uninterrupted run per mode, made on first use: (checkpoint, stdout). A failed attempt leaves its
    directory behind, so a later test that needs the run tries again under a fresh name."""
    done: dict[str, tuple[Path, str]] = {}
    attempts: dict[str, int] = {}

    def get(mode: str) -> tuple[Path, str]:
        if mode not in done:
            attempts[mode] = attempts.get(mode, 0) + 1
            name = f"{mode}-straight-{attempts[mode]}"
            if mode in SEPARATE_PROCESS:
                proc = cli(*train_args(mode_spec(root, mode), name, mode))
                assert proc.returncode == 0, failure(proc)
                out = proc.stdout
            else:  # the same run as `tinyllava train`, without paying for a fresh interpreter
                out = train_here(mode_spec(root, mode), name)
            done[mode] = final_dir(root, name), out
        return done[mode]

    return get


def _weights(ckpt: Path) -> dict:
    from safetensors.torch import load_file

    out = {f"base/{k}": v for k, v in load_file(ckpt / "model.safetensors").items()}
    for adapter in sorted((ckpt / "adapters").glob("*/adapter_model.safetensors")):
        out.update({f"{adapter.parent.name}/{k}": v for k, v in load_file(adapter).items()})
    return out


def _generate(ckpt: Path) -> list[str]:
    from PIL import Image

    from tinyllava.checkpoint import load_checkpoint
    from tinyllava.inference import Pipeline
    from tinyllava.inference.pipeline import GenerationSettings

    pipe = Pipeline(load_checkpoint(ckpt))
    img = Image.new("RGB", (32, 32), (200, 0, 0))
    convs = [[{"from": "human", "value": "<image>\nWhat colour is the shape?"}], [{"from": "human", "value": "Hi"}]]
    return pipe.answer(convs, [img, None], GenerationSettings(max_new_tokens=5))


@pytest.mark.parametrize("mode", list(TUNES))
def test_checkpoint_loads_without_deepspeed_and_generates(mode, straight):
    ckpt, out = straight(mode)
    manifest = json.loads((ckpt / "tinyllava.json").read_text())
    adapters = {"lora": {"llm", "vision_tower"}, "qlora": {"llm"}}.get(mode, set())
    assert set(manifest["adapters"]) == adapters
    assert manifest["save_format"] == ("adapters" if adapters else "full")
    for component in adapters:
        folder = ckpt / "adapters" / component
        assert (folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file()
    answers = _generate(ckpt)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    assert f"stage instruct: {STEPS} steps" in out


def test_parameter_table_counts_quantised_weights(straight):
    """QLoRA packs two 4-bit weights per byte; the table still shows the full sizes (the same totals as the plain
    run, plus the adapters). ZeRO-3's partitioned weights: tests/test_zero3_mixed.py."""
    plain = parameter_rows(straight("zero2")[1])
    qlora = parameter_rows(straight("qlora")[1])
    lora = qlora["llm"][1]
    assert qlora["llm"][0] == plain["llm"][0] + lora and lora > 0 and qlora["llm"][2] == "qlora nf4 r4"


def test_two_processes_freeze_what_gets_no_gradient(straight):
    _, out = straight("ddp")
    line = next(x for x in out.splitlines() if "get no gradient and stay frozen" in x)
    assert "post_layernorm" in line  # CLIP's final norm feeds only the pooled output, never the features
    assert parameter_rows(out)["vision_tower"][1] < parameter_rows(out)["vision_tower"][0]


def test_intermediate_checkpoints_hold_only_trainable_weights(straight):
    from safetensors.torch import load_file

    ckpt, _ = straight("lora")
    saved = load_file(ckpt.parent / "checkpoints" / f"checkpoint-{STEPS}" / "model.safetensors")
    assert saved and all("lora_" in k or k.startswith("connector.") for k in saved)


@pytest.mark.parametrize("mode", list(TUNES))
def test_resume_after_kill_matches_uninterrupted_run(mode, root, straight):
    reference = _weights(straight(mode)[0])
    spec = mode_spec(root, mode)
    name = f"{mode}-killed"
    ckpts = final_dir(root, name).parent / "checkpoints"
    proc = subprocess.Popen([EXE, *train_args(spec, name, mode)], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + SUBPROCESS_TIMEOUT_S
    while time.time() < deadline and last_trainer_checkpoint(ckpts, NPROC.get(mode, 1)) is None:
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    kill_tree(proc.pid)
    proc.wait()
    assert last_trainer_checkpoint(ckpts, NPROC.get(mode, 1)), "the run never reached its first checkpoint"
    assert not (ckpts.parent / "final").exists(), "the run finished before it could be killed"
    if mode in SEPARATE_PROCESS:
        resumed = cli(*train_args(spec, name, mode, "--resume"))
        assert resumed.returncode == 0, failure(resumed)
        out = resumed.stdout
    else:
        out = train_here(spec, name, resume=True)
    assert "resuming from" in out
    result = _weights(final_dir(root, name))
    assert result.keys() == reference.keys()
    for key in reference:
        assert (result[key] - reference[key]).abs().max() <= 1e-6, key
