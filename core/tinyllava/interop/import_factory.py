"""Read a TinyLLaVA Factory checkpoint (either layout its training writes) into an ImportPlan.

- full ("finetune") layout: `config.json` (the nested TinyLlavaConfig) and `model.safetensors` (or
  `pytorch_model.bin`, or shards) keyed `language_model.*`, `vision_tower._vision_tower.*`, `connector._connector.*`;
- component ("pretrain") layout: `config.json` plus `language_model/`, `vision_tower/`, `connector/` folders, each
  with a `pytorch_model.bin` of that component's parameters.

The original keeps no image processor and often no tokenizer beside the weights (it refetches both from the
hub ids in its config); they come from the folder when present, from `--tokenizer` / `--image-processor`, from
the config's paths when those are local folders, else (image processor only) the tower family's published
default, recorded in the manifest's notes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tinyllava.components.connector import ForeignProjector
from tinyllava.interop.import_common import (
    ImportFailed,
    ImportPlan,
    find_weights,
    read_all,
    read_json,
    split_prefix,
)

FORMAT = "tinyllava-factory"
COMPONENT_DIRS = ("language_model", "vision_tower", "connector")
CONFIG_ONLY_KEYS = ("model_name_or_path", "model_name_or_path2")  # set by the original, not config fields
STRATEGIES = {"patch": True, "cls_patch": False}  # -> drop the first token
MLP = re.compile(r"^mlp(\d+)x_gelu$")


def factory_projector(connector_type: str | None, where: str) -> ForeignProjector:
    """The original's `connector_type` in neutral words; its other connectors are refused by name."""
    kind = str(connector_type or "linear")
    match = MLP.match(kind)
    if match:
        return ForeignProjector("mlp", depth=int(match.group(1)), act="gelu", bias=True)
    if kind in ("linear", "identity"):
        return ForeignProjector(kind)
    raise ImportFailed(f"{where}: connector_type {kind!r} cannot be imported; supported: mlpNx_gelu, linear, "
                       f"identity (the original's qformer, resampler and mof_mlp weights have no importer yet)")


def detect_layout(src: Path) -> str:
    if not (src / "config.json").is_file():
        raise ImportFailed(f"{src} is not a TinyLLaVA Factory checkpoint: config.json is missing")
    if (src / "adapter_config.json").is_file():
        raise ImportFailed(f"{src} is a TinyLLaVA Factory LoRA checkpoint (adapter_config.json); merge the adapters "
                           f"into the model with the original first (its load_pretrained_model merges them), save "
                           f"it with save_pretrained, and import that")
    if find_weights(src) is not None:
        return "full"
    if all((src / d).is_dir() for d in COMPONENT_DIRS):
        return "components"
    present = sorted(p.name for p in src.iterdir())
    raise ImportFailed(f"{src}: unknown TinyLLaVA Factory layout: expected model.safetensors / pytorch_model.bin "
                       f"(finetune layout) or the folders {', '.join(COMPONENT_DIRS)} (pretrain layout); found "
                       f"{present[:10]}")


def _component_weights(src: Path, name: str) -> tuple[dict[str, Any], list[Path]]:
    files = find_weights(src / name)
    if files is None:
        raise ImportFailed(f"{src / name}: no pytorch_model.bin or model.safetensors in the component folder")
    return read_all(files), files


def _local_dir(value: Any) -> Path | None:
    if not value:
        return None
    path = Path(str(value).split(":")[-1])
    return path if path.is_dir() else None


@contextmanager
def quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def load_tokenizer(src: Path, config: dict[str, Any], override: Path | None) -> tuple[Any, list[str]]:
    from transformers import AutoTokenizer

    candidates = [override] if override else [src, _local_dir(config.get("tokenizer_name_or_path")),
                                              _local_dir(config.get("llm_model_name_or_path"))]
    for folder in candidates:
        if folder is not None and (Path(folder) / "tokenizer_config.json").is_file():
            with quiet_transformers():  # it reads config.json and warns that `tinyllava` is no transformers type
                return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False), []
    raise ImportFailed(f"{src}: no tokenizer found (no tokenizer_config.json there, nor in the config's "
                       f"tokenizer/LLM paths); pass --tokenizer DIR with the LLM's tokenizer "
                       f"({config.get('tokenizer_name_or_path') or config.get('llm_model_name_or_path')!r})")


def load_image_processor(src: Path, config: dict[str, Any], vision_config: dict[str, Any], tower_cls: Any,
                         override: Path | None) -> tuple[Any, list[str]]:
    from transformers import AutoImageProcessor

    candidates = [override] if override else [src, _local_dir(config.get("vision_model_name_or_path"))]
    for folder in candidates:
        if folder is not None and (Path(folder) / "preprocessor_config.json").is_file():
            with quiet_transformers():
                return AutoImageProcessor.from_pretrained(str(folder), trust_remote_code=False), []
    if override:
        raise ImportFailed(f"{override}: no preprocessor_config.json")
    processor = tower_cls.default_image_processor(vision_config)
    note = (f"no image processor in the source: used the {vision_config.get('model_type')} default "
            f"({type(processor).__name__}); pass --image-processor DIR for "
            f"{config.get('vision_model_name_or_path')!r}'s own")
    return processor, [note]


def read_factory(src: Path, *, tokenizer: Path | None = None, image_processor: Path | None = None,
                 chat_template: dict[str, Any] | None = None, registry: Any = None) -> ImportPlan:
    from tinyllava.interop.import_common import pick_tower
    from tinyllava.plugins.registry import get_registry

    registry = registry or get_registry()
    src = Path(src)
    if not src.is_dir():
        raise ImportFailed(f"{src} is not a folder; give the TinyLLaVA Factory output directory")
    layout = detect_layout(src)
    config = read_json(src / "config.json")
    where = str(src)
    if config.get("model_type") != "tinyllava":
        raise ImportFailed(f"{src}/config.json has model_type {config.get('model_type')!r}, not 'tinyllava'; "
                           f"for a LlavaForConditionalGeneration checkpoint use --from hf-llava")
    vision_path = str(config.get("vision_model_name_or_path") or "")
    if vision_path.startswith("mof:") or config.get("vision_model_name_or_path2"):
        raise ImportFailed(f"{where}: MoF vision towers (CLIP + DINOv2) cannot be imported yet")
    text_config = dict(config.get("text_config") or {})
    vision_config = {k: v for k, v in (config.get("vision_config") or {}).items() if k not in CONFIG_ONLY_KEYS}
    if "model_type" not in text_config or "model_type" not in vision_config:
        raise ImportFailed(f"{src}/config.json: text_config and vision_config must be saved dicts with a model_type")
    strategy = config.get("vision_feature_select_strategy", "patch")
    if strategy not in STRATEGIES:
        raise ImportFailed(f"{where}: vision_feature_select_strategy {strategy!r} is unknown; the original knows "
                           f"patch and cls_patch")
    aspect = config.get("image_aspect_ratio", "square")
    if aspect not in ("square", "pad"):
        raise ImportFailed(f"{where}: image_aspect_ratio {aspect!r} cannot be imported (square and pad can; the "
                           f"original's anyres never worked end to end)")
    projector = factory_projector(config.get("connector_type"), where)

    if layout == "full":
        files = find_weights(src) or []
        state = read_all(files)
        llm_state = split_prefix(state, "language_model.")
        tower_state = split_prefix(state, "vision_tower._vision_tower.")
        conn_state = split_prefix(state, "connector._connector.")
        leftover = [k for k in state if not k.startswith(("language_model.", "vision_tower._vision_tower.",
                                                          "connector._connector."))]
        if leftover:
            raise ImportFailed(f"{where}: unexpected weights outside language_model / vision_tower._vision_tower / "
                               f"connector._connector, e.g. {leftover[:4]}")
    else:
        llm_state, llm_files = _component_weights(src, "language_model")
        tower_state, tower_files = _component_weights(src, "vision_tower")
        raw_conn, conn_files = _component_weights(src, "connector")
        conn_state = split_prefix(raw_conn, "_connector.")
        if len(conn_state) != len(raw_conn):
            raise ImportFailed(f"{src}/connector: expected keys starting with _connector., found "
                               f"{sorted(raw_conn)[:4]}")
        files = [*llm_files, *tower_files, *conn_files]
    for name, part in (("language model", llm_state), ("vision tower", tower_state)):
        if not part:
            raise ImportFailed(f"{where}: the checkpoint holds no {name} weights")

    _, tower_cls = pick_tower(registry, str(vision_config["model_type"]))
    tok, tok_notes = load_tokenizer(src, config, tokenizer)
    proc, proc_notes = load_image_processor(src, config, vision_config, tower_cls, image_processor)
    meta = [src / "config.json"]
    return ImportPlan(
        source_format=FORMAT,
        source_path=src,
        text_config=text_config,
        vision_config=vision_config,
        feature_layer=int(config.get("vision_feature_layer", -2)),
        drop_first_token=STRATEGIES[strategy],
        projector=projector,
        image_preprocess=aspect,
        max_length=int(config.get("tokenizer_model_max_length") or 2048),
        tokenizer=tok,
        image_processor=proc,
        chat_template=chat_template,
        llm_state=llm_state,
        tower_state=tower_state,
        connector_state=conn_state,
        files=[*meta, *files],
        notes=[f"layout: {layout}", *tok_notes, *proc_notes],
    )
