"""Global batch semantics: a stage's batch is the global one, so --nproc keeps the steps, the schedule and the
losses of the one-process run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tinyllava.spec.runspec import StageSpec
from tinyllava.testing import tiny_run_spec
from tinyllava.testing.runs import cli, failure, losses, max_weight_difference, weights
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


def test_two_processes_give_the_loss_curve_of_one(tmp_path):
    spec = equivalence_spec(tmp_path)
    two = cli("train", str(spec), "--set", "name=two", "--nproc", "2")
    assert two.returncode == 0, failure(two)
    assert "global batch 4 = 2 per process × 1 accumulation step(s) × 2 process(es)" in two.stdout
    one = one_process_run(tmp_path, spec)
    two_folder = tmp_path / "runs" / "two" / "stage0-instruct"
    ref, got = losses(one), losses(two_folder)
    assert len(ref) == len(got) == STEPS
    assert got == pytest.approx(ref, abs=1e-4), (ref, got)
    assert max_weight_difference(weights(one / "final"), weights(two_folder / "final")) < 1e-4
    # the same trainable set: intermediate checkpoints hold exactly the trained weights
    trained_one, trained_two = trained_names(one), trained_names(two_folder)
    assert trained_one == trained_two
    final_norm = "vision_tower.model.post_layernorm.weight"  # CLIP's final norm feeds only the pooled output
    assert f"base/{final_norm}" in weights(one / "final") and final_norm not in trained_one
    assert any(name.startswith("vision_tower.") for name in trained_one)


def trained_names(stage_folder: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(stage_folder / "checkpoints" / f"checkpoint-{STEPS}" / "model.safetensors"), "pt") as f:
        return set(f.keys())
