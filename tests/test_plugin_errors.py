"""What a user is told when a plugin is missing, blocked, failed or incompatible: the distribution, the version a
checkpoint was saved with and the exact `pip install` line; a shared bare name never captures a saved model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tinyllava.checkpoint.load import CheckpointError, load_checkpoint
from tinyllava.plugins.registry import Registry
from tinyllava.plugins.requirements import missing_message, resolve_saved
from tinyllava.testing import make_distribution, save_and_reload_tiny


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt")
    save_and_reload_tiny(folder)
    return folder


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    for mod in [m for m in sys.modules if m.startswith("fake_")]:
        del sys.modules[mod]
    return tmp_path


def test_blocked_plugin_names_distribution_saved_version_and_pip_line(checkpoint, monkeypatch):
    monkeypatch.setenv("TINYLLAVA_PLUGINS_BLOCK", "clip,mlp")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(checkpoint, registry=Registry().load_installed())
    msg = str(err.value)
    assert "vision_tower 'clip' from tinyllava-plugin-clip 0.1.0 (installed (0.1.0) but blocked" in msg
    assert "connector 'mlp' from tinyllava-plugin-mlp 0.1.0" in msg
    assert 'pip install "tinyllava-plugin-mlp==0.1.0" "tinyllava-plugin-clip==0.1.0"' in msg or \
        'pip install "tinyllava-plugin-clip==0.1.0" "tinyllava-plugin-mlp==0.1.0"' in msg
    assert "unblock" in msg


def test_missing_plugin_says_not_installed(checkpoint, monkeypatch):
    from tinyllava.plugins import loader

    real = loader.discover_entry_points
    monkeypatch.setattr("tinyllava.plugins.registry.discover_entry_points",
                        lambda: [ep for ep in real() if ep.name != "llama"])
    with pytest.raises(CheckpointError, match=r"llm 'llama' from tinyllava-plugin-llama 0\.1\.0 \(not installed\).*"
                                              r'pip install "tinyllava-plugin-llama==0\.1\.0"'):
        load_checkpoint(checkpoint, registry=Registry().load_installed())


def test_a_third_party_mlp_does_not_capture_a_saved_model(checkpoint, site):
    source = """
    from tinyllava.api import hookimpl
    TINYLLAVA_PLUGIN_API = "1.0"

    @hookimpl
    def register_connectors():
        return {"mlp": "tinyllava_plugin_linear.connector:LinearConnector"}
    """
    make_distribution(site, "fake-mlp", "fakemlp", source, module_name="fake_mlp")
    registry = Registry().load_installed()
    assert ("connector", "mlp") in registry.conflicts
    loaded = load_checkpoint(checkpoint, registry=registry)
    assert type(loaded.model.connector).__name__ != "Linear"  # the saved 2-layer MLP, not the third party's
    assert loaded.manifest["plugins"]["connector/mlp"]["distribution"] == "tinyllava-plugin-mlp"


BROKEN = 'raise RuntimeError("boom")\n'


def test_failed_and_incompatible_plugins_are_named_with_their_state(site):
    make_distribution(site, "fake-old", "fakeold", BROKEN, module_name="fake_old", requires=["tinyllava>=9,<10"])
    make_distribution(site, "fake-broken", "fakebroken", BROKEN, module_name="fake_broken", version="1.0.0")
    registry = Registry().load_installed()
    resolved, missing = resolve_saved({
        "connector/zz": {"plugin": "fakeold", "distribution": "fake-old", "version": "9.0.0"},
        "benchmark/yy": {"plugin": "fakebroken", "distribution": "fake-broken", "version": "1.0.0"},
        "connector/mlp": {"plugin": "mlp", "distribution": "tinyllava-plugin-mlp", "version": "0.1.0"},
    }, registry)
    assert resolved == {"connector/mlp": "mlp"}
    msg = missing_message(missing)
    assert "connector 'zz' from fake-old 9.0.0 (installed (0.1.0) but incompatible: requires tinyllava" in msg
    assert "benchmark 'yy' from fake-broken 1.0.0 (installed (1.0.0) but failed: import failed" in msg
    assert msg.endswith('pip install "fake-old==9.0.0" "fake-broken==1.0.0"')
