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
from tinyllava.plugins import hookimpl

@hookimpl
def register_connectors():
    return {"zz-probe": "tinyllava_plugin_mlp.connector:MLPConnector"}
"""

BROKEN = """
raise RuntimeError("boom at import")
"""

HOOK_RAISES = """
from tinyllava.plugins import hookimpl

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


def test_conflict_names_both_distributions(site):
    make_distribution(site, "fake-one", "fakeone", HEALTHY, module_name="fake_one")
    make_distribution(site, "fake-two", "faketwo", HEALTHY, module_name="fake_two")
    reg = load()
    with pytest.raises(ComponentConflictError) as err:
        reg.entry("connector", "zz-probe")
    assert "fake-one" in str(err.value) and "fake-two" in str(err.value)
    assert record(reg, "fakeone").status == "conflict"
    assert record(reg, "faketwo").status == "conflict"


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
    from tinyllava.plugins import hookimpl
    CALLS = []

    @hookimpl
    def after_evaluation(benchmark, metrics, output_dir):
        CALLS.append(benchmark)
        raise ValueError("lifecycle oops")
    """
    make_distribution(site, "fake-life", "fakelife", source, module_name="fake_life")
    reg = load()
    reg.call_lifecycle("after_evaluation", benchmark="shapes", metrics={}, output_dir="x")
    assert sys.modules["fake_life"].CALLS == ["shapes"]
    assert "lifecycle oops" in caplog.text
