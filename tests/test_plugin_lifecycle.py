"""The lifecycle hooks as the trainer and the evaluator call them (through pluggy), with their documented arguments."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from tinyllava.plugins.registry import reset_registry
from tinyllava.testing import make_distribution, tiny_run_spec

LIFECYCLE = """
import json, os
from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


def log(**fields):
    with open(os.environ["LIFECYCLE_LOG"], "a") as fh:
        fh.write(json.dumps(fields) + "\\n")


@hookimpl
def before_stage(stage_index, stage, run_spec, model):
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(hook="before_stage", index=stage_index, stage=stage.name, run=run_spec.name, trainable=trainable > 0)


@hookimpl
def after_stage(stage_index, checkpoint_dir):
    log(hook="after_stage", index=stage_index, manifest=os.path.isfile(os.path.join(checkpoint_dir, "tinyllava.json")))


@hookimpl
def after_evaluation(benchmark, metrics, output_dir):
    log(hook="after_evaluation", benchmark=benchmark, metrics=sorted(metrics)[:1], folder=os.path.isdir(output_dir))
"""


@pytest.fixture
def lifecycle_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "fake-lifecycle", "fakelifecycle", LIFECYCLE, module_name="fake_lifecycle")
    monkeypatch.syspath_prepend(str(site))
    log = tmp_path / "hooks.jsonl"
    monkeypatch.setenv("LIFECYCLE_LOG", str(log))
    sys.modules.pop("fake_lifecycle", None)
    reset_registry()
    yield log
    reset_registry()


def test_trainer_and_evaluator_call_every_lifecycle_hook(lifecycle_plugin: Path, tmp_path: Path) -> None:
    from tinyllava.spec.runspec import load_spec
    from tinyllava.training.runner import run_training
    from tinyllava_cli.commands.evaluate import evaluate

    raw = tiny_run_spec(tmp_path / "runs", name="hooks", steps=1, num_images=4)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(raw))
    result = run_training(load_spec(spec_file))
    calls = [json.loads(line) for line in lifecycle_plugin.read_text().splitlines()]
    assert calls == [
        {"hook": "before_stage", "index": 0, "stage": "align", "run": "hooks", "trainable": True},
        {"hook": "after_stage", "index": 0, "manifest": True},
        {"hook": "before_stage", "index": 1, "stage": "instruct", "run": "hooks", "trainable": True},
        {"hook": "after_stage", "index": 1, "manifest": True},
    ]
    code = evaluate(Path(result.checkpoint), ["shapes"], None, 2, 2, tmp_path / "eval",
                    ["shapes.per_category=1", "shapes.training_sets=[]", "shapes.image_size=32"])
    assert code == 0
    last = json.loads(lifecycle_plugin.read_text().splitlines()[-1])
    assert last["hook"] == "after_evaluation" and last["benchmark"] == "shapes" and last["folder"] is True
    assert last["metrics"]
