"""Read a transformers `LlavaForConditionalGeneration` checkpoint (transformers 4 or 5 key names) into an ImportPlan.

What LLaVA's config says maps one to one: `vision_feature_layer` (an int) -> the tower's feature_layer;
`vision_feature_select_strategy` `default` (drop token 0, a real patch for SigLIP) / `full`; the projector
(linear_1, act, linear_2) -> a depth-2 MLP; an image processor with `do_pad` -> image_preprocess `pad` (the
core pads, so the saved processor no longer does). The LM keeps its vocabulary, `<image>` row included.
A folder written by `tinyllava export` carries a `tinyllava_export` record in config.json (see
`tinyllava.interop.export_hf_llava`); the import then undoes the export exactly: the same components and
options, the `<image>` embedding rows the exporter appended dropped (and the token it added), and the tower's
config given back the layer count that makes `feature_layer` select the last exported layer (the exporter
writes only the layers the selected feature uses and reads them with vision_feature_layer -1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tinyllava.components.connector import ForeignProjector
from tinyllava.interop.import_common import ImportFailed, ImportPlan, find_weights, read_all, read_json

FORMAT = "hf-llava"
SIDECAR_KEY = "tinyllava_export"  # what export_hf_llava records in config.json
STRATEGIES = {"default": True, "full": False}  # -> drop the first token
# (prefix in the file, component, prefix in the component's own model); transformers 5 names, then 4
PREFIXES = (
    ("model.language_model.", "llm", "model."),
    ("lm_head.", "llm", "lm_head."),
    ("model.vision_tower.", "tower", ""),
    ("model.multi_modal_projector.", "connector", ""),
    ("language_model.model.", "llm", "model."),
    ("language_model.lm_head.", "llm", "lm_head."),
    ("vision_tower.", "tower", ""),
    ("multi_modal_projector.", "connector", ""),
)
PROJECTOR_KEYS = {"linear_1.": "0.", "linear_2.": "2."}


def split_llava_state(state: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    parts: dict[str, dict[str, Any]] = {"llm": {}, "tower": {}, "connector": {}}
    unknown = []
    for key, value in state.items():
        for prefix, part, ours in PREFIXES:
            if key.startswith(prefix):
                parts[part][ours + key[len(prefix):]] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ImportFailed(f"{where}: weights outside the LLaVA layout (language model, vision tower, "
                           f"multi_modal_projector), e.g. {sorted(unknown)[:4]}")
    connector: dict[str, Any] = {}
    for key, value in parts["connector"].items():
        head = next((p for p in PROJECTOR_KEYS if key.startswith(p)), None)
        if head is None:
            raise ImportFailed(f"{where}: unexpected projector weight multi_modal_projector.{key}; LLaVA's projector "
                               f"has linear_1 and linear_2")
        connector[PROJECTOR_KEYS[head] + key[len(head):]] = value
    parts["connector"] = connector
    return parts


def check_config(config: dict[str, Any], where: str) -> None:
    model_type = config.get("model_type")
    if model_type != "llava":
        hint = (" (a TinyLLaVA Factory checkpoint: use --from tinyllava-factory)" if model_type == "tinyllava"
                else "; only LlavaForConditionalGeneration (model_type 'llava') checkpoints can be imported")
        raise ImportFailed(f"{where}: config.json has model_type {model_type!r}{hint}")
    layer = config.get("vision_feature_layer", -2)
    if not isinstance(layer, int):
        raise ImportFailed(f"{where}: vision_feature_layer {layer!r} selects several layers; tinyllava towers select "
                           f"one hidden state, so only an integer vision_feature_layer can be imported")
    strategy = config.get("vision_feature_select_strategy", "default")
    if strategy not in STRATEGIES:
        raise ImportFailed(f"{where}: vision_feature_select_strategy {strategy!r} is unknown (default, full)")
    act = config.get("projector_hidden_act", "gelu")
    if act != "gelu":
        raise ImportFailed(f"{where}: projector_hidden_act {act!r} cannot be imported; the mlp connector uses gelu")
    if not isinstance(config.get("text_config"), dict) or "model_type" not in config["text_config"]:
        raise ImportFailed(f"{where}: config.json needs a text_config with a model_type")


def undo_export(sidecar: dict[str, Any], parts: dict[str, dict[str, Any]], text_config: dict[str, Any],
                vision_config: dict[str, Any], config: dict[str, Any], src: Path, tokenizer: Any) -> Any:
    """The inverse of `export_hf_llava` (in place on parts and configs); returns the tokenizer to use."""
    where = str(src)
    rows = int(sidecar.get("appended_rows") or 0)
    vocab = int(sidecar.get("original_vocab_size") or text_config.get("vocab_size") or 0)
    if rows:
        for key in ("model.embed_tokens.weight", "lm_head.weight"):
            if key in parts["llm"]:
                weight = parts["llm"][key]
                if weight.shape[0] != vocab + rows:
                    raise ImportFailed(f"{where}: {key} has {weight.shape[0]} rows; the export record says "
                                       f"{vocab} + {rows} appended")
                parts["llm"][key] = weight[:vocab].clone()
        text_config["vocab_size"] = vocab
    if sidecar.get("added_image_token", rows > 0):
        tokenizer = _without_token(src, str(sidecar.get("image_token") or "<image>"), tokenizer)
    if "tokenizer_chat_template" in sidecar:  # the LLM's own Jinja, which the processor's replaced
        tokenizer.chat_template = sidecar["tokenizer_chat_template"]
    options = sidecar["components"]["vision_tower"].get("options") or {}
    layer = int(options.get("feature_layer", -2))
    if config.get("vision_feature_layer", -1) != -1:
        raise ImportFailed(f"{where}: the export record expects vision_feature_layer -1, the config says "
                           f"{config.get('vision_feature_layer')}")
    if layer < 0 and "num_hidden_layers" in vision_config:  # total + 1 + layer == exported layers
        vision_config["num_hidden_layers"] = int(vision_config["num_hidden_layers"]) - 1 - layer
    return tokenizer


def _without_token(src: Path, token: str, tokenizer: Any) -> Any:
    """The tokenizer as it was before the exporter added `token` (it is always the last added token)."""
    import json
    import tempfile

    from transformers import AutoTokenizer

    if not (src / "tokenizer.json").is_file():
        return tokenizer
    data = json.loads((src / "tokenizer.json").read_text())
    added = data.get("added_tokens") or []
    if not added or added[-1].get("content") != token:
        return tokenizer
    data["added_tokens"] = added[:-1]
    settings = json.loads((src / "tokenizer_config.json").read_text())
    settings.pop("processor_class", None)
    settings.pop("chat_template", None)  # the exporter's Jinja for the processor, not the LLM's own
    for key in ("extra_special_tokens", "additional_special_tokens"):
        if isinstance(settings.get(key), list):
            settings[key] = [t for t in settings[key] if t != token]
    decoder = settings.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        settings["added_tokens_decoder"] = {k: v for k, v in decoder.items() if v.get("content") != token}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "tokenizer.json").write_text(json.dumps(data))
        (Path(tmp) / "tokenizer_config.json").write_text(json.dumps(settings))
        return AutoTokenizer.from_pretrained(tmp, trust_remote_code=False)


def _max_length(ours: dict[str, Any] | None, tokenizer: Any) -> int:
    """The exporter's recorded value, else the tokenizer's (when it is a real limit, not transformers' 1e30)."""
    if ours and ours.get("max_length"):
        return int(ours["max_length"])
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if limit and limit < 10**6 else 2048


def read_hf_llava(src: Path, *, chat_template: dict[str, Any] | None = None, registry: Any = None) -> ImportPlan:
    from transformers import AutoImageProcessor, AutoTokenizer

    src = Path(src)
    where = str(src)
    if not (src / "config.json").is_file():
        raise ImportFailed(f"{src} is not a transformers checkpoint folder: config.json is missing")
    config = read_json(src / "config.json")
    check_config(config, where)
    files = find_weights(src)
    if files is None:
        raise ImportFailed(f"{src}: no model.safetensors or pytorch_model.bin (or their shard index)")
    parts = split_llava_state(read_all(files), where)
    if not parts["llm"] or not parts["tower"] or not parts["connector"]:
        empty = [name for name, part in parts.items() if not part]
        raise ImportFailed(f"{where}: the weights hold nothing for {', '.join(empty)}")
    vision_config = dict(config.get("vision_config") or {"model_type": "clip_vision_model"})
    vision_config.setdefault("model_type", "clip_vision_model")
    if not (src / "tokenizer_config.json").is_file():
        raise ImportFailed(f"{src}: tokenizer files are missing (tokenizer_config.json)")
    if not any((src / name).is_file() for name in ("preprocessor_config.json", "processor_config.json")):
        raise ImportFailed(f"{src}: the image processor is missing (preprocessor_config.json or "
                           f"processor_config.json)")
    tokenizer = AutoTokenizer.from_pretrained(str(src), trust_remote_code=False)
    processor = AutoImageProcessor.from_pretrained(str(src), trust_remote_code=False)
    pad = bool(getattr(processor, "do_pad", False))
    if pad:
        processor.do_pad = False  # the core letterboxes (image_preprocess pad) before the processor runs
    notes: list[str] = []
    text_config = dict(config["text_config"])
    ours = config.get(SIDECAR_KEY) if isinstance(config.get(SIDECAR_KEY), dict) else None
    components = None
    if ours and isinstance(ours.get("components"), dict):
        components = {k: ours["components"][k] for k in ("llm", "vision_tower", "connector")}
        if chat_template is None and "chat_template" in ours["components"]:
            chat_template = ours["components"]["chat_template"]
        tokenizer = undo_export(ours, parts, text_config, vision_config, config, src, tokenizer)
        notes.append("written by tinyllava export: its components are reused and the export undone")
    metadata = ("config.json", "preprocessor_config.json", "processor_config.json")
    meta = [src / name for name in metadata if (src / name).is_file()]
    return ImportPlan(
        source_format=FORMAT,
        source_path=src,
        text_config=text_config,
        vision_config=vision_config,
        feature_layer=int(config.get("vision_feature_layer", -2)),
        drop_first_token=STRATEGIES[config.get("vision_feature_select_strategy", "default")],
        projector=ForeignProjector("mlp", depth=2, act="gelu", bias=bool(config.get("multimodal_projector_bias",
                                                                                      True))),
        image_preprocess=(ours or {}).get("image_preprocess") or ("pad" if pad else "square"),
        max_length=_max_length(ours, tokenizer),
        tokenizer=tokenizer,
        image_processor=processor,
        chat_template=chat_template,
        llm_state=parts["llm"],
        tower_state=parts["tower"],
        connector_state=parts["connector"],
        files=[*meta, *files],
        notes=notes,
        components=components,
    )
