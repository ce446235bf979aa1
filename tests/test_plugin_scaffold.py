"""`tinyllava plugins new`: a scaffolded distribution installs with pip and its tests (the kit) pass at once."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinyllava.plugins.scaffold import KIND_TEMPLATES, ScaffoldError, package_name, scaffold
from tinyllava.testing.timeouts import SUBPROCESS_TIMEOUT_S


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], dict[str, str]]:
    """A connector and a benchmark scaffolded and installed with a real `pip install` (into a target folder,
    so the shared environment is untouched); the environment that sees their entry points."""
    root = tmp_path_factory.mktemp("scaffold")
    roots = [scaffold("connector", "zz-scaf-conn", root), scaffold("benchmark", "zz-scaf-bench", root)]
    site = root / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(site), *map(str, roots)],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    env = {**os.environ, "COLUMNS": "200",
           "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return root, roots, env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "tinyllava"), *args], capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT_S, env=env)


def test_connector_and_benchmark_pass_their_tests_at_once(installed):
    root, roots, env = installed
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(root),
         *(str(r / "tests") for r in roots)],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, env=env, cwd=root,
    )
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout and "failed" not in tests.stdout and "skipped" not in tests.stdout
    check = cli(env, "plugins", "check", "zz-scaf-conn", "zz-scaf-bench")
    assert check.returncode == 0 and "all 2 plugins ok" in check.stdout, check.stdout + check.stderr


def test_walkthrough_trains_with_the_new_connector_and_evaluates_with_the_new_benchmark(installed, tmp_path):
    """The README/CONTRIBUTING path: a tiny run whose connector is the scaffolded one, then `tinyllava eval` with
    the scaffolded benchmark on a data folder in its documented layout."""
    import json

    import yaml
    from PIL import Image

    from tinyllava.testing import tiny_run_spec

    _, _, env = installed
    raw = tiny_run_spec(tmp_path / "runs", name="walk", steps=1, num_images=4)
    raw["model"]["connector"] = {"name": "zz-scaf-conn", "hidden_multiplier": 2.0}
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    trained = cli(env, "train", str(spec))
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    checkpoint = next(x for x in trained.stdout.splitlines() if x.startswith("checkpoint: ")).split(": ", 1)[1]
    manifest = json.loads((Path(checkpoint.strip()) / "tinyllava.json").read_text())
    assert manifest["plugins"]["connector/zz-scaf-conn"]["distribution"] == "tinyllava-plugin-zz-scaf-conn"
    data = tmp_path / "bench"
    data.mkdir()
    rows = [{"question_id": i, "image": f"{i}.png", "text": "What colour is it?", "answer": c}
            for i, c in enumerate(["red", "blue"])]
    for row in rows:
        Image.new("RGB", (32, 32), row["answer"]).save(data / row["image"])
    (data / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    evaluated = cli(env, "eval", "--model", checkpoint.strip(), "--benchmark", "zz-scaf-bench", "--data", str(data),
                    "--output", str(tmp_path / "ev"))
    assert evaluated.returncode == 0, evaluated.stdout[-3000:] + evaluated.stderr[-3000:]
    report = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert report["benchmarks"]["zz-scaf-bench"]["metrics"]["questions"] == 2


@pytest.mark.parametrize("kind", sorted(KIND_TEMPLATES))
def test_every_kind_scaffolds_a_complete_distribution(tmp_path, monkeypatch, kind):
    """Files, entry point, plugin API, and a README options table that lists exactly the component's options."""
    import tomllib

    from tinyllava.api import PLUGIN_API_VERSION
    from tinyllava.plugins.contracts import contract_problems, default_problems

    name = f"zz-{kind.replace('_', '-')}"
    root = scaffold(kind, name, tmp_path)
    package = package_name(name)
    meta = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert meta["name"] == f"tinyllava-plugin-{name}"
    assert meta["entry-points"]["tinyllava.plugins"] == {name: package}
    assert meta["dependencies"][0].startswith("tinyllava") and ">=0.1,<0.2" in meta["dependencies"][0]
    monkeypatch.syspath_prepend(str(root))
    entry = importlib.import_module(package)
    assert entry.TINYLLAVA_PLUGIN_API == PLUGIN_API_VERSION
    hook = getattr(entry, KIND_TEMPLATES[kind].hook)
    reference = hook()[name]
    module, _, cls_name = reference.partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    assert contract_problems(kind, cls) == [] and default_problems(cls.Options) == []
    readme = (root / "README.md").read_text()
    rows = [line.split("`")[1] for line in readme.splitlines() if line.startswith("| `")]
    if kind != "chat_template":  # a Factory template's settings are class attributes, not options
        assert sorted(rows) == sorted(cls.Options.model_fields), readme
    assert (root / "tests").is_dir() and list((root / "tests").glob("test_*.py"))
    for mod in [m for m in sys.modules if m.startswith(package)]:
        del sys.modules[mod]


def test_bad_requests_are_refused(tmp_path):
    with pytest.raises(ScaffoldError, match="unknown kind 'tokenizer'"):
        scaffold("tokenizer", "x", tmp_path)
    with pytest.raises(ScaffoldError, match="lower-case"):
        scaffold("connector", "My Connector", tmp_path)
    scaffold("connector", "twice", tmp_path)
    with pytest.raises(ScaffoldError, match="already exists"):
        scaffold("connector", "twice", tmp_path)
