"""Global batch semantics: a stage's batch is the global one, so --nproc keeps the steps, the schedule and the
losses of the one-process run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tinyllava.spec.runspec import StageSpec
from tinyllava.testing import tiny_run_spec
from tinyllava.testing.runs import ENV, EXE, cli, failure, losses, max_weight_difference, weights
from tinyllava.testing.timeouts import SUBPROCESS_TIMEOUT_S
from tinyllava.training.global_batch import BatchError, BatchPlan, plan_batch

STEPS = 4


def stage(**fields) -> StageSpec:
    return StageSpec.model_validate({"name": "s", **fields})


@pytest.mark.parametrize(("fields", "world", "plan"), [
    ({"batch_size": 4}, 1, BatchPlan(4, 1, 1)),
    ({"batch_size": 4}, 2, BatchPlan(2, 1, 2)),
    ({"batch_size": 4, "grad_accum": 4}, 2, BatchPlan(4, 2, 2)),
    ({"batch_size": 4, "global_batch_size": 12}, 2, BatchPlan(3, 2, 2)),
    ({"batch_size": 8, "global_batch_size": 32}, 8, BatchPlan(4, 1, 8)),
    ({"batch_size": 4, "grad_accum": 2, "batch_scaling": "per_process"}, 4, BatchPlan(4, 2, 4)),
])
def test_plan_keeps_the_global_batch(fields, world, plan):
    got = plan_batch(stage(**fields), world)
    assert got == plan
    if fields.get("batch_scaling") != "per_process":
        assert got.global_batch == fields.get("global_batch_size", fields["batch_size"] * fields.get("grad_accum", 1))
        assert got.per_device <= fields["batch_size"]


def test_plan_refuses_what_cannot_be_split():
    with pytest.raises(BatchError, match="cannot be split evenly over 2 processes; set global_batch_size"):
        plan_batch(stage(batch_size=5), 2)
    with pytest.raises(BatchError, match="global_batch_size or grad_accum, not both"):
        plan_batch(stage(batch_size=4, grad_accum=2, global_batch_size=16), 1)


def test_check_stages_reports_the_field(monkeypatch, tmp_path):
    from tinyllava.plugins.registry import get_registry
    from tinyllava.spec import load_spec
    from tinyllava.training.runner import RunError, check_stages

    raw = tiny_run_spec(tmp_path / "runs")
    raw["stages"][1]["batch_size"] = 3
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RunError, match=r"stages\.1 \(instruct\): the global batch of 3 samples cannot be split"):
        check_stages(load_spec(path), get_registry())


def test_launcher_refuses_a_batch_it_cannot_split(tmp_path):
    """Checked before torchrun starts: one line, not a failure report per process."""
    raw = tiny_run_spec(tmp_path / "runs")
    raw["stages"][1]["batch_size"] = 3
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    proc = cli("train", str(path), "--nproc", "2")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "stages.1 (instruct): the global batch of 3 samples cannot be split" in out
    assert "Traceback" not in out and "torch.distributed" not in out


def equivalence_spec(root: Path) -> Path:
    raw = tiny_run_spec(root / "runs", steps=STEPS, save_steps=STEPS, num_images=24)
    raw["stages"] = raw["stages"][1:]
    raw["stages"][0].update({"tune": {"llm": "full", "vision_tower": "full", "connector": "full"},
                             "batch_size": 4, "warmup_ratio": 0.0})
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def one_process_run(root: Path, spec: Path, name: str = "one") -> Path:
    """The reference: the same spec in this process (no interpreter to start)."""
    from rich.console import Console

    from tinyllava.spec import load_spec
    from tinyllava.training.runner import run_training

    with open(os.devnull, "w") as sink:
        run_training(load_spec(spec, [f"name={name}"]), console=Console(file=sink))
    return root / "runs" / name / "stage0-instruct"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    """The one-process run every multi-process run here must reproduce: (root, its stage folder)."""
    root = tmp_path_factory.mktemp("batch")
    return root, one_process_run(root, equivalence_spec(root))


def same_training(one: Path, other: Path) -> None:
    ref, got = losses(one), losses(other)
    assert len(ref) == len(got) == STEPS
    assert got == pytest.approx(ref, abs=1e-5), (ref, got)
    assert max_weight_difference(weights(one / "final"), weights(other / "final")) < 1e-5


def test_two_processes_give_the_loss_curve_of_one(reference):
    root, one = reference
    two = cli("train", str(root / "spec.yaml"), "--set", "name=two", "--nproc", "2")
    assert two.returncode == 0, failure(two)
    assert "global batch 4 = 2 per process × 1 accumulation step(s) × 2 process(es)" in two.stdout
    two_folder = root / "runs" / "two" / "stage0-instruct"
    same_training(one, two_folder)
    # the same trainable set: intermediate checkpoints hold exactly the trained weights
    trained_one, trained_two = trained_names(one), trained_names(two_folder)
    assert trained_one == trained_two
    final_norm = "vision_tower.model.post_layernorm.weight"  # CLIP's final norm feeds only the pooled output
    assert f"base/{final_norm}" in weights(one / "final") and final_norm not in trained_one
    assert any(name.startswith("vision_tower.") for name in trained_one)


def test_two_machines_give_the_loss_curve_of_one(reference):
    """Two nodes of one process each, simulated on 127.0.0.1: each runs the same command with its --node-rank."""
    from tinyllava.training.distributed import free_port

    root, one = reference
    node = [EXE, "train", str(root / "spec.yaml"), "--set", "name=nodes", "--nnodes", "2", "--master-addr",
            "127.0.0.1", "--master-port", str(free_port())]
    procs = [subprocess.Popen([*node, "--node-rank", str(rank)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=ENV) for rank in (1, 0)]
    outs = [p.communicate(timeout=SUBPROCESS_TIMEOUT_S)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n---\n".join(o[-3000:] for o in outs)
    assert "launching 1 process(es) on machine 0 of 2" in outs[1]
    assert "global batch 4 = 2 per process × 1 accumulation step(s) × 2 process(es)" in outs[1]
    same_training(one, root / "runs" / "nodes" / "stage0-instruct")


@pytest.mark.parametrize(("flags", "message"), [
    (["--nnodes", "2"], "--nnodes > 1 needs --master-addr"),
    (["--nnodes", "2", "--node-rank", "2", "--master-addr", "10.0.0.1"], "--node-rank 2: give this machine's place"),
    (["--nnodes", "0"], "--nnodes 0: give a number of machines"),
])
def test_launch_flags_are_checked(tmp_path, flags, message):
    spec = equivalence_spec(tmp_path)
    proc = cli("train", str(spec), *flags)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr and "Traceback" not in proc.stderr


def trained_names(stage_folder: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(stage_folder / "checkpoints" / f"checkpoint-{STEPS}" / "model.safetensors"), "pt") as f:
        return set(f.keys())
