"""Each plugin depends only on the core: no plugin imports another, and blocking one never breaks another.

Code several plugins share lives in core kits (`tinyllava.kits`); a plugin that pairs with another plugin's
component (OpenELM with the `llama` template, MoF with the clip and dinov2 towers) asks the registry for it
by name at run time.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinyllava.plugins.registry import Registry
from tinyllava.testing.timeouts import SUBPROCESS_TIMEOUT_S

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
PLUGIN_DIRS = sorted(p for p in PLUGINS.iterdir() if (p / "pyproject.toml").exists())


def package_of(plugin_dir: Path) -> str:
    return plugin_dir.name.replace("-", "_")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("plugin_dir", PLUGIN_DIRS, ids=lambda p: p.name)
def test_no_plugin_imports_another_plugin(plugin_dir: Path) -> None:
    """Package and tests alike: another plugin's module is never imported (shared code is a core kit)."""
    own = package_of(plugin_dir)
    offenders = []
    for path in sorted(plugin_dir.rglob("*.py")):
        if "egg-info" in str(path) or "build" in path.relative_to(plugin_dir).parts:
            continue
        for module in imported_modules(path):
            top = module.split(".")[0]
            if top.startswith("tinyllava_plugin_") and top != own:
                offenders.append(f"{path.relative_to(PLUGINS)} imports {module}")
    assert not offenders, "; ".join(offenders)


def test_blocking_any_one_plugin_leaves_every_other_healthy(monkeypatch: pytest.MonkeyPatch) -> None:
    healthy = {r.plugin_id for r in Registry().load_installed().plugins if r.status == "ok"}
    assert {"native", "llama", "gemma", "openelm"} <= healthy
    for blocked in sorted(healthy):
        monkeypatch.setenv("TINYLLAVA_PLUGINS_BLOCK", blocked)
        statuses = {r.plugin_id: r.status for r in Registry().load_installed().plugins}
        assert statuses[blocked] == "blocked"
        assert {p for p in healthy - {blocked} if statuses[p] != "ok"} == set(), blocked


GONE = """
import importlib.abc, json, sys

class Gone(importlib.abc.MetaPathFinder):
    '''As if the native and llama distributions were not installed: their packages cannot be imported.'''
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tinyllava_plugin_native", "tinyllava_plugin_llama"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, Gone())
import torch
torch.set_num_threads(1)
from tinyllava.plugins.registry import get_registry
reg = get_registry()
failed = {}
for (kind, name), entry in sorted(reg.entries.items()):
    if entry.plugin_id in ("native", "llama"):
        continue
    try:
        reg.component_class(kind, name)
    except Exception as exc:
        failed[f"{kind}:{name}"] = f"{type(exc).__name__}: {exc}"
tiny = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 2, "head_dim": 16}
model, tok = reg.create("llm", "gemma", {"config": tiny, "tokenizer_vocab_size": 300}).build()
elm = {"model_dim": 32, "head_dim": 8, "num_transformer_layers": 1, "num_gqa_groups": 2,
       "qkv_multipliers": [1.0, 1.0], "ffn_multipliers": [1.0, 1.0], "ffn_dim_divisor": 16}
model2, tok2 = reg.create("llm", "openelm", {"config": elm, "tokenizer_vocab_size": 300}).build()
print(json.dumps({"failed": failed, "built": [type(model).__name__, type(model2).__name__]}))
"""


def test_family_plugins_work_with_native_and_llama_uninstalled() -> None:
    """gemma (family kit) and openelm (local tokenizer) once imported the native and llama plugins."""
    out = subprocess.run([sys.executable, "-c", GONE], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S,
                         env={**os.environ, "TINYLLAVA_PLUGINS_BLOCK": "native,llama"})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["failed"] == {}
    assert result["built"] == ["GemmaForCausalLM", "OpenELMForCausalLM"]
