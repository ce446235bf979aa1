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


def test_connector_and_benchmark_install_and_pass_their_tests(tmp_path):
    """A real `pip install` of each (into a target folder, so the shared environment is untouched), then pytest
    on their own tests with the entry points visible: the conformance kit and the plugins' checks pass."""
    roots = [scaffold("connector", "zz-scaf-conn", tmp_path), scaffold("benchmark", "zz-scaf-bench", tmp_path)]
    site = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(site), *map(str, roots)],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         *(str(r / "tests") for r in roots)],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, env=env, cwd=tmp_path,
    )
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout and "failed" not in tests.stdout and "skipped" not in tests.stdout
    check = subprocess.run(
        [str(Path(sys.executable).parent / "tinyllava"), "plugins", "check", "zz-scaf-conn", "zz-scaf-bench"],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, env={**env, "COLUMNS": "200"},
    )
    assert check.returncode == 0 and "all 2 plugins ok" in check.stdout, check.stdout + check.stderr


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
