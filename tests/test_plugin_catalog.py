"""The core's table of first-party distributions (used to say what to install) matches the in-repo plugins."""

from __future__ import annotations

from pathlib import Path

from tinyllava.plugins.catalog import FIRST_PARTY, first_party_plugin, first_party_providers
from tinyllava.plugins.registry import Registry

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def test_catalog_lists_every_in_repo_plugin_and_what_it_registers():
    installed = {
        r.distribution: (r.plugin_id, {k: tuple(sorted(v)) for k, v in r.components.items()})
        for r in Registry().load_installed().plugins if r.distribution.startswith("tinyllava-plugin-")
    }
    folders = {p.name for p in PLUGINS.iterdir() if (p / "pyproject.toml").is_file()}
    assert set(FIRST_PARTY) == folders, "update tinyllava/plugins/catalog.py for added or removed plugins"
    catalog = {d: (p, {k: tuple(sorted(v)) for k, v in c.items()}) for d, (p, c) in FIRST_PARTY.items()}
    assert catalog == installed, "update tinyllava/plugins/catalog.py: a plugin registers other names now"


def test_lookups():
    assert first_party_providers("llm", "gemma") == ["tinyllava-plugin-gemma"]
    assert first_party_providers("connector", "nope") == []
    assert first_party_plugin("tinyllava-plugin-custom-finetune") == "custom-finetune"
    assert first_party_plugin("someone-else") is None
