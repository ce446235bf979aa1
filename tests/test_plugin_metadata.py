"""Every distribution's pyproject carries complete metadata (read statically; the wheelhouse test builds some)."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from tinyllava.plugins.catalog import FIRST_PARTY

ROOT = Path(__file__).resolve().parents[1]
PROJECTS = [ROOT, *sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file())]
#: plugin distributions a plugin depends on because it pairs with their components by name (never imported)
PAIRED = {"tinyllava-plugin-openelm": {"tinyllava-plugin-llama"}, "tinyllava-plugin-stablelm": {"tinyllava-plugin-phi"},
          "tinyllava-plugin-mof": {"tinyllava-plugin-clip", "tinyllava-plugin-dinov2"}}


@pytest.mark.parametrize("folder", PROJECTS, ids=lambda p: p.name)
def test_pyproject_metadata_is_complete(folder: Path) -> None:
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    name = project["name"]
    assert project["license"] == "Apache-2.0" and project["readme"] == "README.md"
    assert (folder / "README.md").read_text().startswith(f"# {name}\n") or name == "tinyllava"
    assert project["description"] and project["requires-python"]
    assert any(c.startswith("Topic :: Scientific/Engineering") for c in project["classifiers"])
    assert {"Homepage", "Repository", "Issues", "Documentation"} <= set(project["urls"])
    if name == "tinyllava":
        assert (folder / "LICENSE").is_file() and project["license-files"] == ["LICENSE"]
        return
    core = [d for d in project["dependencies"] if d.startswith("tinyllava") and not d.startswith("tinyllava-")]
    assert len(core) == 1 and core[0].endswith(">=0.1,<0.2"), project["dependencies"]
    plugins = {d.split(">")[0].split("=")[0] for d in project["dependencies"] if d.startswith("tinyllava-plugin")}
    assert plugins <= PAIRED.get(name, set())
    plugin_id = FIRST_PARTY[name][0]
    assert project["entry-points"]["tinyllava.plugins"] == {plugin_id: name.replace("-", "_")}
