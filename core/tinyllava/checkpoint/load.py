"""Load a checkpoint directory: rebuild the skeleton from saved configs, then load the weights.

Nothing is fetched from a hub: configs, tokenizer and image processor all come from the directory.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyllava.constants import CHECKPOINT_FORMAT_VERSION, MANIFEST_NAME

log = logging.getLogger(__name__)


KNOWN_FEATURES = {"adapters"}


class CheckpointError(ValueError):
    """The directory is not a loadable tinyllava checkpoint; the message says why."""


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    image_processor: Any
    template: Any
    manifest: dict[str, Any]
    path: Path


def read_manifest(path: Path) -> dict[str, Any]:
    path = Path(path)
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        raise CheckpointError(f"{path} is not a tinyllava checkpoint: {MANIFEST_NAME} is missing")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{manifest_path} cannot be read ({_one_line(exc)}); the checkpoint is damaged") from None
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{manifest_path}: expected a JSON object, found {type(manifest).__name__}")
    version = manifest.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {version} is not supported (this tinyllava reads {CHECKPOINT_FORMAT_VERSION})"
        )
    unknown = sorted(set(manifest.get("features") or []) - KNOWN_FEATURES)
    if unknown:
        raise CheckpointError(f"{path}: the checkpoint uses {', '.join(unknown)}, which this tinyllava cannot read; "
                              f"upgrade tinyllava")
    _check_fields(manifest, manifest_path)
    return manifest


# what every manifest holds, and its type (an edited or damaged manifest is named field by field)
_REQUIRED = {"weights": str, "components": dict, "image_preprocess": str, "max_length": int}
_KINDS = ("llm", "vision_tower", "connector", "chat_template")


def _check_fields(manifest: dict[str, Any], where: Path) -> None:
    for key, kind in _REQUIRED.items():
        if not isinstance(manifest.get(key), kind):
            found = "missing" if key not in manifest else f"a {type(manifest[key]).__name__}"
            raise CheckpointError(f"{where}: field {key!r} must be a {kind.__name__} ({found}); the manifest was "
                                  f"edited or damaged")
    for kind in _KINDS:
        comp = manifest["components"].get(kind)
        if not (isinstance(comp, dict) and isinstance(comp.get("name"), str)
                and isinstance(comp.get("options", {}), dict)):
            raise CheckpointError(f"{where}: field 'components.{kind}' must be {{name, options}}; the manifest was "
                                  f"edited or damaged")
    if not isinstance(manifest.get("plugins", {}), dict) or not isinstance(manifest.get("adapters") or {}, dict):
        raise CheckpointError(f"{where}: fields 'plugins' and 'adapters' must be objects")
    adapters = manifest.get("adapters") or {}
    for component, entry in adapters.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)):
            raise CheckpointError(f"{where}: field 'adapters.{component}' must be an object with a 'path'")
    # a checkpoint only ever reads files inside itself
    for name in [manifest["weights"], *(entry["path"] for entry in adapters.values())]:
        if not name or Path(name).is_absolute() or ".." in Path(name).parts:
            raise CheckpointError(f"{where}: {name!r} is not a path inside the checkpoint; the manifest was edited")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


@contextmanager
def _reading(path: Path, what: str) -> Iterator[None]:
    """Turn a library's error while reading part of a checkpoint into a CheckpointError naming that part."""
    from safetensors import SafetensorError

    try:
        yield
    except CheckpointError:
        raise
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RuntimeError, SafetensorError,
            LookupError) as exc:
        raise CheckpointError(f"{path}: {what} cannot be loaded ({type(exc).__name__}: {_one_line(exc)}); the "
                              f"checkpoint is damaged or incomplete") from None


def _check_plugins(manifest: dict[str, Any], registry: Any) -> dict[str, str]:
    """{"kind/name": the name to create it with}; a CheckpointError naming the distributions, the versions the
    checkpoint was saved with and the `pip install` line when a plugin is missing, blocked, failed or incompatible."""
    from tinyllava.plugins.requirements import missing_message, resolve_saved

    resolved, missing = resolve_saved(manifest.get("plugins", {}), registry)
    if missing:
        raise CheckpointError(missing_message(missing))
    return resolved


def load_weights(model: Any, file: Path) -> None:
    """Load a safetensors file into the model; tied weights may be stored under any one of their names."""
    from safetensors.torch import load_file

    from tinyllava.checkpoint.adapters import _alias_groups

    state = load_file(str(file))
    aliases = _alias_groups(model)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not any(a in state for a in aliases.get(k, [k]))]
    if missing or unexpected:
        raise CheckpointError(
            f"{file.parent}: weights do not match the model: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )


# initialisers that draw random numbers: pointless for a skeleton whose every weight the checkpoint overwrites
_RANDOM_INITS = ("uniform_", "normal_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
                 "trunc_normal_", "orthogonal_", "sparse_")


def _keep(tensor: Any, *args: Any, **kwargs: Any) -> Any:
    return tensor


@contextmanager
def skeleton_init() -> Iterator[None]:
    """Build modules without drawing their random initial weights (half of a tiny model's load time).

    Only the random initialisers become no-ops (torch's, as modules call them, and transformers' table of them);
    deterministic ones (zeros, ones, copies: buffers such as rotary frequencies) still run, weight tying still
    happens. Safe because `load_weights` refuses a checkpoint that leaves any parameter unset. Narrower than
    transformers' `no_init_weights`, which also disables the deterministic initialisers and
    `PreTrainedModel.init_weights` as a whole.
    """
    import torch

    try:
        from transformers import initialization as hf_init
    except ImportError:  # pragma: no cover - older transformers
        hf_init = None
    names = getattr(hf_init, "TORCH_MODULES_TO_PATCH", ("torch.nn.init",))
    saved: list[tuple[Any, str, Any]] = []
    for module in {id(m): m for m in [torch.nn.init, *(sys.modules.get(n) for n in names)] if m is not None}.values():
        for fn in _RANDOM_INITS:
            if hasattr(module, fn):
                saved.append((module, fn, getattr(module, fn)))
                setattr(module, fn, _keep)
    table = getattr(hf_init, "TORCH_INIT_FUNCTIONS", None)
    table_saved = {fn: table[fn] for fn in _RANDOM_INITS if table is not None and fn in table}
    try:
        if table is not None:
            table.update({fn: _keep for fn in table_saved})
        yield
    finally:
        for module, fn, original in reversed(saved):
            setattr(module, fn, original)
        if table is not None:
            table.update(table_saved)


def _to_dtype(model: Any, dtype: Any) -> Any:
    """Cast to `dtype`, keeping rotary-embedding frequencies in float32 (as transformers' own loaders do: in bf16
    they lose the precision that positions far into the sequence need)."""
    import torch

    model = model.to(dtype)
    if dtype != torch.float32:
        for module in model.modules():
            if type(module).__name__.endswith("RotaryEmbedding"):
                for key, buf in list(module._buffers.items()):
                    if buf is not None and buf.is_floating_point():
                        module._buffers[key] = buf.float()
    return model


def load_checkpoint(path: Path, registry: Any = None, device: Any = None, dtype: Any = None,
                    merge_adapters: bool = False) -> Loaded:
    """Rebuild the model offline. A checkpoint with adapters comes back with its components wrapped in PEFT
    (exactly what was trained), or with the adapters folded into the weights when `merge_adapters` is set.

    `device` and `dtype` (torch objects or their names) place the model; see `tinyllava.inference.device` for the
    CLI's auto choice. The skeleton is built without random initialisation: the weights come from the file.
    """
    from transformers import AutoImageProcessor, AutoTokenizer

    from tinyllava.checkpoint.adapters import attach_adapters
    from tinyllava.checkpoint.adapters import merge_adapters as merge
    from tinyllava.model.build import assemble
    from tinyllava.plugins.registry import get_registry

    registry = registry or get_registry()
    path = Path(path)
    manifest = read_manifest(path)
    with _reading(path, "field 'plugins' of the manifest"):
        names = _check_plugins(manifest, registry)
    comps = manifest["components"]
    with _reading(path, "config.json"):
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))

    def create(kind: str) -> Any:
        name = comps[kind]["name"]
        return registry.create(kind, names.get(f"{kind}/{name}", name), comps[kind].get("options", {}))

    with _reading(path, "the components the manifest names"):  # only registered plugin components are built
        llm, tower, connector, template = (create(k) for k in _KINDS)
    with _reading(path, "tokenizer/"):
        tokenizer = AutoTokenizer.from_pretrained(path / "tokenizer", trust_remote_code=False)
    with _reading(path, "image_processor/"):
        image_processor = AutoImageProcessor.from_pretrained(path / "image_processor", trust_remote_code=False)
    with _reading(path, "the model described by config.json"), skeleton_init():
        language_model = llm.from_config(config["text_config"])
        encoder = tower.from_config(config["vision_config"], image_processor)
        assembled = assemble(
            llm, tower, connector,
            language_model=language_model, tokenizer=tokenizer, encoder=encoder, image_processor=image_processor,
            image_preprocess=manifest["image_preprocess"], max_length=manifest["max_length"],
        )
    model = assembled.model
    with _reading(path, manifest["weights"]):
        load_weights(model, path / manifest["weights"])
    adapters = manifest.get("adapters") or {}
    for component, entry in adapters.items():  # adapters are read from safetensors only, never from a pickle
        if not (path / entry["path"] / "adapter_model.safetensors").is_file():
            raise CheckpointError(f"{path}: the {component} adapter has no {entry['path']}/adapter_model.safetensors")
    if adapters:
        with _reading(path, "the adapters"):
            attach_adapters(model, path, adapters)
        if merge_adapters:
            merge(model)
    if dtype is not None:
        model = _to_dtype(model, _torch_dtype(dtype))
    if device is not None:
        model = model.to(device)
    model.eval()
    return Loaded(model, tokenizer, image_processor, template, manifest, path)


def _torch_dtype(dtype: Any) -> Any:
    import torch

    if isinstance(dtype, str):
        named = getattr(torch, dtype, None)
        if not isinstance(named, torch.dtype):
            raise ValueError(f"dtype {dtype!r} is not a torch dtype (e.g. float32, bfloat16, float16)")
        return named
    return dtype
