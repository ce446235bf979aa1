"""`tinyllava plugins check`, contracts as ABCs refused when resolved, `config schema` reporting what it left out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ConfigDict, Field

from tinyllava.components.base import ComponentOptions
from tinyllava.plugins.contracts import ComponentContractError, default_problems
from tinyllava.plugins.registry import Registry, reset_registry
from tinyllava.spec.schema import run_spec_schema
from tinyllava.testing import make_distribution
from tinyllava.testing.timeouts import SUBPROCESS_TIMEOUT_S
from tinyllava_cli.commands.plugins_check import plugins_check

HALF = """
from tinyllava.api import Connector, hookimpl
TINYLLAVA_PLUGIN_API = "1.0"

@hookimpl
def register_connectors():
    return {"zz-half": "fake_half:Half"}

class Half(Connector):
    '''Forgot build().'''
"""

BAD_DEFAULT = """
from typing import ClassVar
from pydantic import Field
from tinyllava.api import ComponentOptions, Connector, hookimpl
TINYLLAVA_PLUGIN_API = "1.0"

@hookimpl
def register_connectors():
    return {"zz-bad": "fake_bad:Bad"}

class BadOptions(ComponentOptions):
    scale: float = Field(-1.0, gt=0)

class Bad(Connector):
    Options: ClassVar = BadOptions

    def build(self, vision_dim, llm_dim, num_vision_tokens):
        raise NotImplementedError
"""

WRONG_KIND = """
from tinyllava.api import hookimpl
TINYLLAVA_PLUGIN_API = "1.0"

@hookimpl
def register_llms():
    return {"zz-wrong": "tinyllava_plugin_mlp.connector:MLPConnector"}
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    for mod in [m for m in sys.modules if m.startswith("fake_")]:
        del sys.modules[mod]
    reset_registry()
    yield tmp_path
    reset_registry()


def test_a_class_missing_an_abstract_method_is_refused_when_resolved(site):
    make_distribution(site, "fake-half", "fakehalf", HALF, module_name="fake_half")
    registry = Registry().load_installed()
    with pytest.raises(ComponentContractError, match=r"Half does not implement build\(vision_dim, llm_dim, "
                                                     r"num_vision_tokens\).*Connector"):
        registry.component_class("connector", "zz-half")


def test_a_class_registered_under_the_wrong_kind_is_refused(site):
    make_distribution(site, "fake-wrong", "fakewrong", WRONG_KIND, module_name="fake_wrong")
    with pytest.raises(ComponentContractError, match="not a subclass of tinyllava.api.LLM"):
        Registry().load_installed().component_class("llm", "zz-wrong")


def test_default_problems_and_options_base():
    class Good(ComponentOptions):
        depth: int = Field(2, ge=1)
        names: list[str] = Field(default_factory=list)

    class Bad(ComponentOptions):
        depth: int = Field(0, ge=1)
        kind: int = "x"  # type: ignore[assignment]

    assert default_problems(Good) == []
    problems = default_problems(Bad)
    assert len(problems) == 2 and "Bad.depth: default 0 is invalid" in problems[0]

    class Loose(ComponentOptions):
        model_config = ConfigDict(extra="allow")

    from tinyllava.plugins.contracts import contract_problems

    MLPConnector = Registry().load_installed().component_class("connector", "mlp")  # noqa: N806
    assert contract_problems("connector", MLPConnector) == []
    loose = type("LooseConnector", (MLPConnector,), {"Options": Loose})
    assert "must refuse unknown keys" in contract_problems("connector", loose)[0]


def test_plugins_check_reports_every_problem_and_exits_1(site, capsys):
    make_distribution(site, "fake-half", "fakehalf", HALF, module_name="fake_half")
    make_distribution(site, "fake-bad", "fakebad", BAD_DEFAULT, module_name="fake_bad")
    make_distribution(site, "fake-broken", "fakebroken", 'raise RuntimeError("boom")\n', module_name="fake_broken")
    make_distribution(site, "fake-mlp", "fakemlp", HALF.replace('"zz-half"', '"mlp"'), module_name="fake_mlp")
    code = plugins_check([], with_traceback=True, as_json=True)
    out = capsys.readouterr()
    report = {p["plugin"]: p for p in json.loads(out.out)["plugins"]}
    assert code == 1
    assert any("does not implement build" in p for p in report["fakehalf"]["problems"])
    assert report["fakebad"]["problems"] == ["connector 'zz-bad': BadOptions.scale: default -1.0 is invalid: "
                                             "Input should be greater than 0"]
    assert report["fakebroken"]["problems"][0].startswith("failed: import failed: RuntimeError: boom")
    assert "RuntimeError: boom" in report["fakebroken"]["tracebacks"][0]
    assert any("'mlp:mlp'" in p for p in report["mlp"]["problems"])  # the shared bare name is a conflict
    assert report["linear"]["ok"] and report["linear"]["problems"] == []


def test_plugins_check_of_named_plugins(site, capsys):
    make_distribution(site, "fake-broken", "fakebroken", 'raise RuntimeError("boom")\n', module_name="fake_broken")
    assert plugins_check(["mlp", "tinyllava-plugin-linear"], with_traceback=False, as_json=False) == 0
    out = capsys.readouterr().out
    assert "all 2 plugins ok" in out and "fakebroken" not in out
    assert plugins_check(["nope"], with_traceback=False, as_json=False) == 2
    assert "no installed plugin 'nope'" in capsys.readouterr().err


def test_config_schema_reports_what_it_left_out(site):
    make_distribution(site, "fake-half", "fakehalf", HALF, module_name="fake_half")
    skipped: list[tuple[str, str, str]] = []
    schema = run_spec_schema(Registry().load_installed(), skipped=skipped)
    assert [(k, n) for k, n, _ in skipped] == [("connector", "zz-half")]
    assert "connector.mlp" in schema["$defs"] and "connector.zz-half" not in schema["$defs"]


def test_cli_plugins_check_all_in_repo_plugins_pass():
    exe = Path(sys.executable).parent / "tinyllava"
    proc = subprocess.run([str(exe), "plugins", "check", "--json"], capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT_S, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["ok"] and len(report["plugins"]) >= 29
