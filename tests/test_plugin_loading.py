"""Plugin discovery with real distributions made on the fly (dist-info + entry points on sys.path)."""

from __future__ import annotations

import sys

import pytest

from tinyllava.plugins.loader import check_entry_point, discover_entry_points
from tinyllava.plugins.registry import (
    ComponentConflictError,
    ComponentNotFoundError,
    Registry,
)
from tinyllava.testing import make_distribution

HEALTHY = """
from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"

@hookimpl
def register_connectors():
    return {"zz-probe": "tinyllava_plugin_mlp.connector:MLPConnector"}
"""

BROKEN = """
raise RuntimeError("boom at import")
"""

HOOK_RAISES = """
from tinyllava.api import hookimpl

@hookimpl
def register_connectors():
    raise KeyError("hook exploded")
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A temporary site dir on sys.path; distributions written there are installed."""
    monkeypatch.syspath_prepend(str(tmp_path))
    for mod in [m for m in sys.modules if m.startswith("fake_")]:
        del sys.modules[mod]
    return tmp_path


def load(monkeypatch=None) -> Registry:
    return Registry().load_installed()


def record(reg: Registry, plugin_id: str):
    return next(r for r in reg.plugins if r.plugin_id == plugin_id)


def test_healthy_plugin_registers_lazily(site):
    make_distribution(site, "fake-healthy", "fakehealthy", HEALTHY, module_name="fake_healthy")
    reg = load()
    rec = record(reg, "fakehealthy")
    assert rec.status == "ok", rec.error
    assert rec.distribution == "fake-healthy" and rec.version == "0.1.0"
    entry = reg.entry("connector", "zz-probe")
    assert entry.reference == "tinyllava_plugin_mlp.connector:MLPConnector"
    assert reg.component_class("connector", "zz-probe").__name__ == "MLPConnector"


def test_failing_import_is_reported_and_others_still_work(site):
    make_distribution(site, "fake-broken", "fakebroken", BROKEN, module_name="fake_broken", version="2.3.4")
    make_distribution(site, "fake-healthy", "fakehealthy", HEALTHY, module_name="fake_healthy")
    reg = load()
    broken = record(reg, "fakebroken")
    assert broken.status == "failed"
    assert broken.version == "2.3.4" and broken.distribution == "fake-broken"
    assert "boom at import" in broken.error
    assert record(reg, "fakehealthy").status == "ok"
    assert "zz-probe" in reg.names("connector")
    assert "mlp" in reg.names("connector")  # the in-repo plugin is unaffected


def test_raising_hook_is_reported(site):
    make_distribution(site, "fake-hook", "fakehook", HOOK_RAISES, module_name="fake_hook")
    reg = load()
    rec = record(reg, "fakehook")
    assert rec.status == "failed"
    assert "register_connectors" in rec.error and "hook exploded" in rec.error
    assert "mlp" in reg.names("connector")


def test_shared_bare_name_is_an_error_only_when_used_and_qualified_names_work(site):
    make_distribution(site, "fake-one", "fakeone", HEALTHY, module_name="fake_one")
    make_distribution(site, "fake-two", "faketwo", HEALTHY, module_name="fake_two")
    reg = load()
    with pytest.raises(ComponentConflictError) as err:
        reg.entry("connector", "zz-probe")
    assert "fake-one" in str(err.value) and "fake-two" in str(err.value)
    assert "'fakeone:zz-probe'" in str(err.value) and "'faketwo:zz-probe'" in str(err.value)
    assert reg.entry("connector", "fakeone:zz-probe").distribution == "fake-one"
    assert reg.entry("connector", "fake-two:zz-probe").plugin_id == "faketwo"  # the distribution name works too
    for plugin in ("fakeone", "faketwo"):
        rec = record(reg, plugin)
        assert rec.status == "ok" and any("zz-probe" in w for w in rec.warnings)
    assert {"fakeone:zz-probe", "faketwo:zz-probe"} <= set(reg.names("connector"))


def test_a_third_party_mlp_never_knocks_out_the_first_party_one(site):
    third = HEALTHY.replace('"zz-probe"', '"mlp"').replace("return {", 'return {"zz-other": "x.y:Z", ')
    make_distribution(site, "fake-mlp", "fakemlp", third, module_name="fake_mlp")
    reg = load()
    assert record(reg, "mlp").status == "ok" and record(reg, "fakemlp").status == "ok"
    assert reg.entry("connector", "mlp:mlp").distribution == "tinyllava-plugin-mlp"
    assert reg.create("connector", "mlp:mlp", {}).name == "mlp"
    assert reg.entry("connector", "fakemlp:mlp").distribution == "fake-mlp"
    assert reg.entry("connector", "zz-other").plugin_id == "fakemlp"  # its other components are unaffected
    assert reg.entry("connector", "linear").plugin_id == "linear"
    with pytest.raises(ComponentConflictError, match=r"'mlp:mlp'.*'fakemlp:mlp'|'fakemlp:mlp'.*'mlp:mlp'"):
        reg.create("connector", "mlp", {})


def test_qualified_name_of_a_plugin_that_does_not_provide_it():
    with pytest.raises(ComponentNotFoundError, match="unknown connector 'llama:mlp'"):
        load().entry("connector", "llama:mlp")


def test_names_with_a_colon_are_refused_at_registration(site):
    make_distribution(site, "fake-colon", "fakecolon", HEALTHY.replace('"zz-probe"', '"a:b"'),
                      module_name="fake_colon")
    rec = record(load(), "fakecolon")
    assert rec.status == "failed" and "a:b" in rec.error


def test_incompatible_plugin_is_not_imported(site):
    make_distribution(site, "fake-old", "fakeold", BROKEN, module_name="fake_old", requires=["tinyllava>=9,<10"])
    reg = load()
    rec = record(reg, "fakeold")
    assert rec.status == "incompatible"
    assert ">=9" in rec.error or "<10" in rec.error
    assert "fake_old" not in sys.modules  # its (raising) module was never imported


def test_compatible_requirement_loads(site):
    make_distribution(site, "fake-ok", "fakeok", HEALTHY, module_name="fake_ok", requires=["tinyllava>=0.1,<0.2"])
    assert record(load(), "fakeok").status == "ok"


def test_block_and_allow_lists(site, monkeypatch):
    make_distribution(site, "fake-healthy", "fakehealthy", HEALTHY, module_name="fake_healthy")
    monkeypatch.setenv("TINYLLAVA_PLUGINS_BLOCK", "fakehealthy")
    reg = load()
    assert record(reg, "fakehealthy").status == "blocked"
    assert "zz-probe" not in reg.names("connector")
    monkeypatch.delenv("TINYLLAVA_PLUGINS_BLOCK")
    monkeypatch.setenv("TINYLLAVA_PLUGINS_ALLOW", "fakehealthy,mlp")
    reg = load()
    assert record(reg, "fakehealthy").status == "ok"
    assert record(reg, "llama").status == "blocked"
    assert reg.names("connector") == ["mlp", "zz-probe"]


def test_unknown_component_suggests_closest():
    reg = load()
    with pytest.raises(ComponentNotFoundError) as err:
        reg.entry("connector", "mpl")
    assert "did you mean 'mlp'" in str(err.value)
    installed = str(err.value).split("Installed connector components: ")[1].split(", ")
    assert "mlp" in installed and installed == sorted(installed)


def test_discovery_order_is_deterministic(site):
    make_distribution(site, "fake-b", "fakeb", HEALTHY.replace("zz-probe", "zz-b"), module_name="fake_b")
    make_distribution(site, "fake-a", "fakea", HEALTHY.replace("zz-probe", "zz-a"), module_name="fake_a")
    names = [ep.name for ep in discover_entry_points()]
    assert names == sorted(names)
    assert [r.plugin_id for r in load().plugins] == names


def test_check_entry_point_reports_version(site):
    make_distribution(site, "fake-healthy", "fakehealthy", HEALTHY, module_name="fake_healthy", version="1.2.3")
    ep = next(e for e in discover_entry_points() if e.name == "fakehealthy")
    assert check_entry_point(ep).version == "1.2.3"


def test_lifecycle_hook_failure_is_not_fatal(site, caplog):
    source = """
    from tinyllava.api import hookimpl
    CALLS = []

    @hookimpl
    def after_evaluation(benchmark, metrics, output_dir):
        CALLS.append(benchmark)
        raise ValueError("lifecycle oops")
    """
    other = """
    from tinyllava.api import hookimpl
    CALLS = []

    @hookimpl
    def after_evaluation(metrics):
        CALLS.append(metrics)
    """
    make_distribution(site, "fake-life", "fakelife", source, module_name="fake_life")
    make_distribution(site, "fake-life2", "fakelife2", other, module_name="fake_life2")
    reg = load()
    reg.call_lifecycle("after_evaluation", benchmark="shapes", metrics={"a": 1}, output_dir="x")
    assert sys.modules["fake_life"].CALLS == ["shapes"]
    assert sys.modules["fake_life2"].CALLS == [{"a": 1}]  # runs although the other plugin's hook raised
    assert "fakelife" in caplog.text and "lifecycle oops" in caplog.text


def test_lifecycle_hooks_go_through_pluggy(site):
    """Hook calls are pluggy hook calls: a tracing monitor sees them, hookwrappers wrap them."""
    source = """
    from tinyllava.api import hookimpl
    ORDER = []

    @hookimpl(wrapper=True)
    def after_stage(stage_index):
        ORDER.append(("before", stage_index))
        result = yield
        ORDER.append(("after", stage_index))
        return result
    """
    make_distribution(site, "fake-wrap", "fakewrap", source, module_name="fake_wrap")
    reg = load()
    assert record(reg, "fakewrap").status == "ok", record(reg, "fakewrap").error
    traced = []
    undo = reg.plugin_manager.add_hookcall_monitoring(lambda name, impls, kwargs: traced.append(name),
                                                      lambda *args: None)
    reg.call_lifecycle("after_stage", stage_index=3, stage=None, run_spec=None, checkpoint_dir="x")
    undo()
    assert traced == ["after_stage"]
    assert sys.modules["fake_wrap"].ORDER == [("before", 3), ("after", 3)]
    with pytest.raises(ValueError, match="unknown lifecycle hook"):
        reg.call_lifecycle("after_everything")


def test_plugin_api_version_is_checked(site):
    newer = HEALTHY.replace('TINYLLAVA_PLUGIN_API = "1.0"', 'TINYLLAVA_PLUGIN_API = "1.99"')
    other_major = HEALTHY.replace('TINYLLAVA_PLUGIN_API = "1.0"', 'TINYLLAVA_PLUGIN_API = "2.0"')
    undeclared = HEALTHY.replace('TINYLLAVA_PLUGIN_API = "1.0"', "")
    make_distribution(site, "fake-newer", "fakenewer", newer, module_name="fake_newer")
    make_distribution(site, "fake-major", "fakemajor", other_major, module_name="fake_major")
    make_distribution(site, "fake-undeclared", "fakeundeclared", undeclared.replace("zz-probe", "zz-u"),
                      module_name="fake_undeclared")
    reg = load()
    assert record(reg, "fakenewer").status == "incompatible" and "upgrade tinyllava" in record(reg, "fakenewer").error
    assert record(reg, "fakemajor").status == "incompatible" and "plugin API 2.0" in record(reg, "fakemajor").error
    rec = record(reg, "fakeundeclared")
    assert rec.status == "ok" and "TINYLLAVA_PLUGIN_API" in rec.warnings[0]
    assert "zz-probe" not in reg.names("connector") and "zz-u" in reg.names("connector")


def test_every_in_repo_plugin_declares_the_plugin_api():
    from tinyllava.api import PLUGIN_API_VERSION

    reg = load()
    assert {r.plugin_id: r.plugin_api for r in reg.plugins if r.plugin_api != PLUGIN_API_VERSION} == {}
    assert {r.plugin_id: r.warnings for r in reg.plugins if r.warnings} == {}


def test_unknown_component_names_a_blocked_provider_and_the_install_line(site, monkeypatch):
    monkeypatch.setenv("TINYLLAVA_PLUGINS_BLOCK", "gemma")
    with pytest.raises(ComponentNotFoundError) as err:
        load().entry("llm", "gemma")
    assert "provided by tinyllava-plugin-gemma 0.1.0, which is installed but blocked" in str(err.value)
    assert "may provide it" not in str(err.value)
    monkeypatch.setenv("TINYLLAVA_PLUGINS_BLOCK", "tinyllava-plugin-gemma")
    from tinyllava.plugins import loader

    real = loader.discover_entry_points
    monkeypatch.setattr("tinyllava.plugins.registry.discover_entry_points",
                        lambda: [ep for ep in real() if ep.name != "gemma"])  # as if it were not installed
    with pytest.raises(ComponentNotFoundError, match="not installed: pip install tinyllava-plugin-gemma"):
        load().entry("llm", "gemma")


def test_unknown_component_mentions_plugins_that_did_not_load(site):
    make_distribution(site, "fake-broken", "fakebroken", BROKEN, module_name="fake_broken", version="2.3.4")
    with pytest.raises(ComponentNotFoundError) as err:
        load().entry("connector", "zz-mystery")
    assert "fake-broken 2.3.4 (failed: import failed: RuntimeError: boom at import)" in str(err.value)
    assert "tinyllava-plugin-" not in str(err.value)  # first-party plugins are known not to provide it
