"""What every importer shares: safe weight reading, choosing plugins by contract, writing the checkpoint.

A format-specific reader (TinyLLaVA Factory, HF LLaVA) turns its source into an `ImportPlan`: configs, the
foreign feature selection and projector in neutral words, and one state dict per component keyed as the
component's own transformers model (or nn.Sequential) keys them. Nothing here knows a plugin by name: the
LLM and tower plugins are found by the `model_type`s they declare, the connector by the plugin that accepts
the projector (`import_options`).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyllava.components.connector import ForeignProjector

PICKLE_SUFFIXES = (".bin", ".pth", ".pt")
SAFE_SUFFIXES = (".safetensors",)
# keys that hold no weight of the module (computed buffers some transformers versions saved)
IGNORED_KEY_SUFFIXES = ("position_ids", "rotary_emb.inv_freq")


class ImportFailed(ValueError):
    """The source cannot be imported; the message says what is wrong, where, and how to fix it."""


@dataclass
class ImportPlan:
    source_format: str
    source_path: Path
    text_config: dict[str, Any]
    vision_config: dict[str, Any]
    feature_layer: int
    drop_first_token: bool
    projector: ForeignProjector
    image_preprocess: str
    max_length: int
    tokenizer: Any
    image_processor: Any
    chat_template: dict[str, Any] | None
    llm_state: dict[str, Any]
    tower_state: dict[str, Any]
    connector_state: dict[str, Any]
    files: list[Path] = field(default_factory=list)  # what the hash covers
    notes: list[str] = field(default_factory=list)
    components: dict[str, dict[str, Any]] | None = None  # exact components when the source records ours


# -- reading weights ----------------------------------------------------------------------------------
def read_weights(file: Path) -> dict[str, Any]:
    """Tensors of one weights file: safetensors as is, pickles only through `torch.load(weights_only=True)`."""
    import torch

    file = Path(file)
    if file.name.endswith(SAFE_SUFFIXES):
        from safetensors.torch import load_file

        return dict(load_file(str(file)))
    if not file.name.endswith(PICKLE_SUFFIXES):
        raise ImportFailed(f"{file}: unknown weights format; tinyllava reads .safetensors, or .bin/.pth pickles "
                           f"holding only tensors")
    try:
        state = torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as exc:  # the unpickler refuses anything but tensors and plain containers
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ImportFailed(
            f"{file}: refused to read this pickle: it holds something other than tensors ({reason}). Only "
            f"weights-only pickles are read (torch.load(weights_only=True)); convert it to safetensors with "
            f"code you trust"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ImportFailed(f"{file}: expected a mapping of parameter names to tensors, found "
                           f"{type(state).__name__} with non-tensor values")
    return {str(k): v for k, v in state.items()}


def find_weights(folder: Path, stem: str = "model") -> list[Path] | None:
    """The weights files of a transformers-style folder (single or sharded), None when there are none."""
    folder = Path(folder)
    names = {"model": ("model.safetensors", "pytorch_model.bin")}.get(stem, (f"{stem}.safetensors", f"{stem}.bin"))
    for name in names:
        if (folder / name).is_file():
            return [folder / name]
        index = folder / f"{name}.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [folder / shard for shard in shards]
    return None


def read_all(files: list[Path]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for file in files:
        state.update(read_weights(file))
    return state


def split_prefix(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def read_json(file: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(file).read_text())
    except FileNotFoundError:
        raise ImportFailed(f"{file} is missing") from None
    except json.JSONDecodeError as exc:
        raise ImportFailed(f"{file} is not valid JSON: {exc}") from None


# -- choosing plugins -----------------------------------------------------------------------------------
def _classes(registry: Any, kind: str) -> list[tuple[str, Any]]:
    out = []
    for name in registry.names(kind):
        try:
            out.append((name, registry.component_class(kind, name)))
        except Exception:  # a plugin that fails to load cannot adopt anything
            continue
    return out


def _pick(registry: Any, kind: str, test: Any, what: str, hint: str) -> Any:
    matches = [(name, cls) for name, cls in _classes(registry, kind) if test(cls)]
    if not matches:
        raise ImportFailed(f"no installed {kind} plugin adopts {what}; {hint}")
    return matches[0]


def _declared(registry: Any, kind: str) -> str:
    types = sorted({t for _, cls in _classes(registry, kind) for t in getattr(cls, "model_types", ())})
    return ", ".join(types) or "none"


def pick_llm(registry: Any, model_type: str) -> tuple[str, Any]:
    return _pick(registry, "llm", lambda cls: cls.adopts(model_type), f"LLM model_type {model_type!r}",
                 f"the installed llm plugins adopt {_declared(registry, 'llm')}; install a plugin for this family")


def pick_tower(registry: Any, model_type: str) -> tuple[str, Any]:
    return _pick(registry, "vision_tower", lambda cls: cls.adopts(model_type),
                 f"vision model_type {model_type!r}",
                 f"the installed vision_tower plugins adopt {_declared(registry, 'vision_tower')}; install a "
                 f"plugin for this tower")


def pick_connector(registry: Any, projector: ForeignProjector) -> tuple[str, Any, dict[str, Any]]:
    found: dict[str, Any] = {}

    def accepts(cls: Any) -> bool:
        options = cls.import_options(projector)
        if options is not None:
            found[cls.__qualname__] = options
        return options is not None

    name, cls = _pick(registry, "connector", accepts, f"the projector {projector}",
                      "supported: mlp with gelu and biases (any depth), linear, identity")
    return name, cls, found[cls.__qualname__]


# -- fitting foreign keys to our modules -----------------------------------------------------------------
def _candidates(key: str) -> list[str]:
    """Spellings of one key across transformers versions (CLIP/SigLIP vision models lost `vision_model.`)."""
    out = [key]
    if key.startswith("vision_model."):
        out.append(key[len("vision_model."):])
    else:
        out.append("vision_model." + key)
    return out


def fit_state(state: dict[str, Any], module: Any, where: str, *, droppable: Any = None) -> tuple[dict, list[str]]:
    """`state` re-keyed to `module`'s names. Keys the module does not hold are errors unless `droppable(key)`
    says the module left them out on purpose (a tower's layers above the selected one, a pooling head)."""
    expected = set(module.state_dict().keys())
    fitted: dict[str, Any] = {}
    dropped: list[str] = []
    unknown: list[str] = []
    for key, value in state.items():
        target = next((c for c in _candidates(key) if c in expected), None)
        if target is not None:
            fitted[target] = value
        elif key.endswith(IGNORED_KEY_SUFFIXES) or (droppable is not None and droppable(key)):
            dropped.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise ImportFailed(f"{where}: {len(unknown)} weight(s) have no place in the {type(module).__name__} built "
                           f"from the config, e.g. {sorted(unknown)[:4]}; the weights and config.json disagree")
    return fitted, dropped


def tower_droppable(encoder: Any) -> Any:
    """Weights an HFVisionEncoder leaves out by design: layers above the selected one and pooling heads."""
    import re

    kept = len(encoder.model.get_submodule(encoder.layers_path))

    def droppable(key: str) -> bool:
        match = re.search(r"encoder\.layers\.(\d+)\.", key)
        if match and int(match.group(1)) >= kept:
            return True
        return key.startswith(("head.", "vision_model.head."))

    return droppable


def file_hash(files: list[Path]) -> str:
    """sha256 over the source files (names and bytes, in name order): which exact checkpoint came in."""
    digest = hashlib.sha256()
    for file in sorted(files, key=lambda f: str(f)):
        digest.update(Path(file).name.encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


# -- writing ----------------------------------------------------------------------------------------------
def write_checkpoint(plan: ImportPlan, output: Path, registry: Any = None) -> Path:
    """Build our model from the plan's components, load the foreign weights exactly, save a checkpoint."""
    import torch

    from tinyllava.checkpoint.load import CheckpointError
    from tinyllava.checkpoint.save import save_checkpoint
    from tinyllava.model.build import assemble
    from tinyllava.plugins.registry import get_registry

    registry = registry or get_registry()
    where = str(plan.source_path)
    if plan.components is not None:
        comps = plan.components
        llm = registry.create("llm", comps["llm"]["name"], comps["llm"]["options"])
        tower = registry.create("vision_tower", comps["vision_tower"]["name"], comps["vision_tower"]["options"])
        connector = registry.create("connector", comps["connector"]["name"], comps["connector"]["options"])
    else:
        llm_name, llm_cls = pick_llm(registry, str(plan.text_config.get("model_type")))
        tower_name, tower_cls = pick_tower(registry, str(plan.vision_config.get("model_type")))
        conn_name, _, conn_options = pick_connector(registry, plan.projector)
        llm = registry.create("llm", llm_name, llm_cls.import_options(plan.text_config))
        tower = registry.create("vision_tower", tower_name, tower_cls.import_options(
            plan.vision_config, feature_layer=plan.feature_layer, drop_first_token=plan.drop_first_token))
        connector = registry.create("connector", conn_name, conn_options)
    template = plan.chat_template
    if template is None:
        name = type(llm).factory_chat_template(plan.text_config, plan.tokenizer)
        if name is None:
            raise ImportFailed(f"{where}: no chat template is known for llm {llm.name!r}; pass --chat-template NAME")
        template = {"name": name, "options": {}}
    registry.create("chat_template", template["name"], template.get("options") or {})  # validate the choice

    tokenizer = llm.prepare_tokenizer(plan.tokenizer)
    try:
        language_model = llm.from_config(plan.text_config)
        encoder = tower.from_config(plan.vision_config, plan.image_processor)
        assembled = assemble(llm, tower, connector, language_model=language_model, tokenizer=tokenizer,
                             encoder=encoder, image_processor=plan.image_processor,
                             image_preprocess=plan.image_preprocess, max_length=plan.max_length)
    except (ValueError, KeyError, TypeError) as exc:
        raise ImportFailed(f"{where}: the configs do not build a model: {exc}") from None
    model = assembled.model
    llm_state, _ = fit_state(plan.llm_state, model.language_model, f"{where} (language model)")
    tower_state, dropped = fit_state(plan.tower_state, model.vision_tower.model, f"{where} (vision tower)",
                                     droppable=tower_droppable(model.vision_tower))
    conn_state, _ = fit_state(plan.connector_state, model.connector, f"{where} (connector)")
    state = {**{f"language_model.{k}": v for k, v in llm_state.items()},
             **{f"vision_tower.model.{k}": v for k, v in tower_state.items()},
             **{f"connector.{k}": v for k, v in conn_state.items()}}
    _load_exact(model, state, where)
    if dropped:
        plan.notes.append(f"{len(dropped)} vision tower weight(s) the selected features never use were left out "
                          f"(layers above feature_layer {plan.feature_layer}, pooling head)")
    model.to(torch.float32)
    provenance = {
        "format": plan.source_format,
        "path": str(Path(plan.source_path).resolve()),
        "hash": file_hash(plan.files),
        "files": sorted(str(Path(f).relative_to(plan.source_path)) for f in plan.files),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "notes": plan.notes,
    }
    try:
        return save_checkpoint(Path(output), model, tokenizer, plan.image_processor, chat_template=template,
                               registry=registry, stage="import", extra_manifest={"imported_from": provenance})
    except CheckpointError as exc:
        raise ImportFailed(str(exc)) from None


def _load_exact(model: Any, state: dict[str, Any], where: str) -> None:
    """Every parameter of our model must come from the source (tied weights count once)."""
    from tinyllava.checkpoint.adapters import _alias_groups

    ours = model.state_dict()
    for key, value in state.items():
        target = ours.get(key)
        if target is not None and tuple(target.shape) != tuple(value.shape):
            raise ImportFailed(f"{where}: weight {key} has shape {tuple(value.shape)} but the config builds "
                               f"{tuple(target.shape)}")
    aliases = _alias_groups(model)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not any(a in state for a in aliases.get(k, [k]))
               and not k.endswith(IGNORED_KEY_SUFFIXES)]
    if missing or unexpected:
        raise ImportFailed(f"{where}: the weights do not cover the model: missing {sorted(missing)[:5]}, "
                           f"unexpected {sorted(unexpected)[:5]}")
