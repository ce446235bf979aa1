"""Loading never runs code a file brings along.

- A scan of the code (core, plugins, CLI): no pickle is read except through `torch.load(weights_only=True)`;
  `trust_remote_code` is never enabled: every transformers Auto* `from_pretrained` passes it as a literal False
  (left unset, transformers asks on stdin whether to run a folder's code, and a user could say yes), and no other
  value or use of the name exists; modules are imported by name only where plugins are loaded.
- Doctored checkpoints: a manifest naming a module, a tokenizer or image processor with `auto_map` (remote code),
  an adapter stored as a pickle, a path out of the checkpoint: each is a CheckpointError, and the module it
  points at is never imported.
"""

from __future__ import annotations

import ast
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = [ROOT / "core", ROOT / "tinyllava_cli", *sorted((ROOT / "plugins").glob("tinyllava-plugin-*"))]
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
# the plugin machinery resolves entry points and registered `module:Class` references: the only dynamic imports
DYNAMIC_IMPORT_ALLOWED = {"core/tinyllava/plugins/registry.py", "core/tinyllava/plugins/contracts.py",
                          "core/tinyllava/plugins/loader.py", "tinyllava_cli/commands/plugins_check.py"}


def _is_true(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _is_false(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def violations(source: str, where: str) -> list[str]:
    """What in `source` could load a pickle unsafely, run remote code or import a module named by data."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        line = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.keyword) and node.arg == "trust_remote_code" and not _is_false(node.value):
            found.append(f"{line}: trust_remote_code other than a literal False")
        if (isinstance(node, ast.Name) and node.id == "trust_remote_code") or (
                isinstance(node, ast.Constant) and isinstance(node.value, str) and "trust_remote_code" in node.value):
            found.append(f"{line}: trust_remote_code as a name or in a string (could reach a call as **kwargs)")
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                if name.split(".")[0] in PICKLE_MODULES:
                    found.append(f"{line}: imports {name}")
        if not isinstance(node, ast.Call):
            continue
        func = _dotted(node.func)
        keywords = {k.arg: k.value for k in node.keywords}
        if func.endswith(("torch.load", "serialization.load")):
            if not _is_true(keywords.get("weights_only", ast.Constant(None))):
                found.append(f"{line}: {func}() without weights_only=True")
        if func.split(".")[0].startswith("Auto") and func.endswith(".from_pretrained"):
            if not _is_false(keywords.get("trust_remote_code", ast.Constant(None))):
                found.append(f"{line}: {func}() without trust_remote_code=False (transformers would ask on stdin)")
        if func.endswith(".load") and _is_true(keywords.get("allow_pickle", ast.Constant(None))):
            found.append(f"{line}: {func}(allow_pickle=True)")
        if func.endswith("read_pickle") or func.split(".")[0] in PICKLE_MODULES:
            found.append(f"{line}: {func}()")
        if func in ("importlib.import_module", "__import__", "import_module") and where not in DYNAMIC_IMPORT_ALLOWED:
            if not (node.args and isinstance(node.args[0], ast.Constant)):
                found.append(f"{line}: {func}() of a computed name")
    return found


def test_the_scanner_finds_each_kind_of_violation():
    bad = ("import pickle\nimport torch, importlib\nx = torch.load(f)\ny = torch.load(f, weights_only=False)\n"
           "z = np.load(f, allow_pickle=True)\nAutoModel.from_pretrained(p, trust_remote_code=True)\n"
           "importlib.import_module(name)\npd.read_pickle(f)\n")
    found = violations(bad, "bad.py")
    assert len(found) == 8, found  # AutoModel: trust_remote_code=True, so also not False
    assert violations("kw = {'trust_remote_code': True}\nAutoTokenizer.from_pretrained(p, **kw)\n", "kw.py")
    assert violations("import torch\nx = torch.load(f, weights_only=True)\nimportlib.import_module('json')\n"
                      "AutoTokenizer.from_pretrained(p, trust_remote_code=False)\n", "ok.py") == []


def test_no_unsafe_loading_in_core_plugins_and_cli():
    files = [p for root in SCANNED for p in root.rglob("*.py") if "tests" not in p.relative_to(root).parts]
    assert len(files) > 100
    found = [v for p in files for v in violations(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))]
    assert found == [], "\n".join(found)


# -- doctored checkpoints ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from tinyllava.testing import save_and_reload_tiny

    folder = tmp_path_factory.mktemp("safe") / "ckpt"
    save_and_reload_tiny(folder)
    return folder


def _marker_module(folder: Path, module: str, marker: Path) -> None:
    """A module that leaves `marker` behind if anything ever imports it."""
    (folder / f"{module}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
        f"class Evil:\n    pass\n"
    )


def _edit_json(file: Path, **changes) -> None:
    data = json.loads(file.read_text())
    data.update(changes)
    file.write_text(json.dumps(data))


def _copy(checkpoint: Path, tmp_path: Path) -> Path:
    target = tmp_path / "doctored"
    shutil.copytree(checkpoint, target)
    return target


def _refused(folder: Path, *expected: str) -> str:
    from tinyllava.checkpoint.load import CheckpointError, load_checkpoint

    with pytest.raises(CheckpointError) as info:
        load_checkpoint(folder)
    message = str(info.value)
    assert "\n" not in message.strip() or "pip install" in message
    for text in expected:
        assert text in message, message
    return message


def test_a_manifest_cannot_name_a_module_to_import(checkpoint, tmp_path, monkeypatch):
    ckpt = _copy(checkpoint, tmp_path)
    marker = tmp_path / "imported.txt"
    _marker_module(tmp_path, "evil_component", marker)
    monkeypatch.syspath_prepend(str(tmp_path))  # importable, were anything to try
    manifest = json.loads((ckpt / "tinyllava.json").read_text())
    manifest["components"]["connector"] = {"name": "evil_component:Evil", "options": {}}
    manifest["plugins"].pop("connector/mlp", None)
    (ckpt / "tinyllava.json").write_text(json.dumps(manifest))
    _refused(ckpt, "evil_component")
    manifest["plugins"]["connector/evil_component:Evil"] = {"plugin": "evil_component", "distribution": "evil",
                                                            "version": "1.0"}
    (ckpt / "tinyllava.json").write_text(json.dumps(manifest))
    _refused(ckpt, "evil")
    assert not marker.exists() and "evil_component" not in sys.modules


@pytest.mark.parametrize("part, config_file, auto_map, own_class", [
    ("tokenizer", "tokenizer_config.json", {"AutoTokenizer": ["evil_tokenizer.Evil", None]}, "tokenizer_class"),
    ("image_processor", "preprocessor_config.json", {"AutoImageProcessor": "evil_processor.Evil"},
     "image_processor_type"),
])
def test_remote_code_in_a_checkpoint_is_never_run(checkpoint, tmp_path, part, config_file, auto_map, own_class):
    from tinyllava.checkpoint.load import load_checkpoint

    ckpt = _copy(checkpoint, tmp_path)
    marker = tmp_path / "imported.txt"
    module = next(iter(auto_map.values()))
    module = (module[0] if isinstance(module, list) else module).split(".")[0]
    _marker_module(ckpt / part, module, marker)
    _edit_json(ckpt / part / config_file, auto_map=auto_map)
    load_checkpoint(ckpt)  # the built-in class it names is used; the folder's code is ignored
    config = json.loads((ckpt / part / config_file).read_text())
    config.pop(own_class)  # now only the folder's code could load it: refused, without asking
    (ckpt / part / config_file).write_text(json.dumps(config))
    _refused(ckpt, f"{part}/", "custom code")
    assert not marker.exists() and module not in sys.modules


def test_config_json_auto_map_is_ignored(checkpoint, tmp_path):
    """config.json is read as data: an auto_map in it points nowhere (the plugin builds its own architecture)."""
    from tinyllava.checkpoint.load import load_checkpoint

    ckpt = _copy(checkpoint, tmp_path)
    marker = tmp_path / "imported.txt"
    _marker_module(ckpt, "evil_config", marker)
    config = json.loads((ckpt / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil_config.Evil", "AutoModel": "evil_config.Evil"}
    config["text_config"]["auto_map"] = {"AutoConfig": "evil_config.Evil"}
    (ckpt / "config.json").write_text(json.dumps(config))
    load_checkpoint(ckpt)
    assert not marker.exists() and "evil_config" not in sys.modules


def test_paths_out_of_the_checkpoint_and_pickled_adapters_are_refused(checkpoint, tmp_path):
    ckpt = _copy(checkpoint, tmp_path)
    shutil.copy(ckpt / "model.safetensors", tmp_path / "outside.safetensors")
    _edit_json(ckpt / "tinyllava.json", weights="../outside.safetensors")
    _refused(ckpt, "'../outside.safetensors' is not a path inside the checkpoint")
    _edit_json(ckpt / "tinyllava.json", weights="model.safetensors",
               adapters={"llm": {"path": "adapters/llm"}}, features=["adapters"])
    (ckpt / "adapters" / "llm").mkdir(parents=True)
    (ckpt / "adapters" / "llm" / "adapter_model.bin").write_bytes(b"pickle")
    (ckpt / "adapters" / "llm" / "adapter_config.json").write_text("{}")
    _refused(ckpt, "adapters/llm/adapter_model.safetensors")


def test_an_imported_pickle_that_runs_code_is_refused(tmp_path):
    import torch

    from tinyllava.interop.import_common import ImportFailed, read_weights

    marker = tmp_path / "ran.txt"

    class Payload:
        def __reduce__(self):
            return (Path.write_text, (marker, "ran"))

    torch.save({"weight": torch.zeros(2), "payload": Payload()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ImportFailed, match="refused to read this pickle"):
        read_weights(tmp_path / "pytorch_model.bin")
    assert not marker.exists()
