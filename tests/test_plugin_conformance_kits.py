"""The conformance kits themselves: the dataset and benchmark kits on the shapes plugin, and readable assertion
messages when a kit check fails outside the repo (the kit is registered for pytest's assertion rewriting)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from textwrap import dedent
from typing import Any, ClassVar

from tinyllava.testing import make_distribution
from tinyllava.testing.conformance import BenchmarkConformance, DatasetConformance
from tinyllava.testing.timeouts import SUBPROCESS_TIMEOUT_S


class TestShapesDatasetKit(DatasetConformance):
    name: ClassVar[str] = "shapes"
    options: ClassVar[dict[str, Any]] = {"num_images": 4, "image_size": 32, "split": "captions"}


class TestShapesBenchmarkKit(BenchmarkConformance):
    name: ClassVar[str] = "shapes"
    options: ClassVar[dict[str, Any]] = {"per_category": 1, "training_sets": [], "image_size": 32}


BAD_CONNECTOR = """
from typing import ClassVar
from pydantic import Field
from tinyllava.api import ComponentOptions, Connector, hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_connectors():
    return {"kit-probe": "kitprobe_mod:Probe"}


class ProbeOptions(ComponentOptions):
    scale: float = Field(-1.0, gt=0)


class Probe(Connector):
    Options: ClassVar = ProbeOptions

    def build(self, vision_dim, llm_dim, num_vision_tokens):
        from torch import nn
        return nn.Linear(vision_dim, llm_dim)
"""

KIT_TEST = """
from tinyllava.testing.conformance import ConnectorConformance


class TestProbe(ConnectorConformance):
    name = "kit-probe"
    options = {"scale": 1.0}
"""


def run_kit(tmp_path: Path, *extra: str) -> str:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    make_distribution(site, "kitprobe", "kitprobe", BAD_CONNECTOR, module_name="kitprobe_mod")
    tests = tmp_path / "tests"
    tests.mkdir(exist_ok=True)
    (tests / "test_probe.py").write_text(dedent(KIT_TEST))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tests), str(tests),
         "-k", "defaults_validate", *extra],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]  # the bad default fails the kit
    return proc.stdout


def test_failing_kit_check_shows_the_compared_values_outside_the_repo(tmp_path):
    out = run_kit(tmp_path)
    assert "ProbeOptions.scale: default -1.0 is invalid" in out
    plain = run_kit(tmp_path, "-p", "no:tinyllava")  # without the pytest11 registration: no values shown
    assert "ProbeOptions.scale: default -1.0 is invalid" not in plain
