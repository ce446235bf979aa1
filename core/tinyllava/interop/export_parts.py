"""Shared `hf_llava_export` implementations for the plugins built on transformers models.

- `causal_lm_part`: an `XForCausalLM` whose logits are `lm_head(base_model(...))` (Llama, Qwen, Gemma,
  StableLM, Phi-3 ...). LLaVA rebuilds the base with `AutoModel.from_config(text_config)` and owns a bias-free
  `lm_head`, so a head with a bias (Phi-1/2), a logit soft-cap (Gemma 2) or a logit scale is refused.
- `hf_vision_part`: a transformers vision model wrapped in `tinyllava.model.vision.HFVisionEncoder`. The encoder
  keeps only the layers up to the selected hidden state, so the exported tower is that truncated tower and
  LLaVA reads its last hidden state (`vision_feature_layer=-1`): the same numbers, and no weight is invented
  for layers that were never trained or saved.
"""

from __future__ import annotations

from typing import Any

from tinyllava.interop.export_contract import (
    LM_HEAD_PREFIX,
    LM_PREFIX,
    TOWER_PREFIX,
    HFLlavaPart,
    NotExportable,
    component_label,
)


def _auto_model_class_name(model_type: str) -> str | None:
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    name = MODEL_MAPPING_NAMES.get(model_type)
    if isinstance(name, (tuple, list)):
        name = name[0]
    return name


def causal_lm_part(component: Any, model: Any) -> HFLlavaPart:
    """The LLM part for a transformers causal LM (`model.model` the base, `model.lm_head` the head)."""
    from torch import nn

    label = component_label(component)
    config = model.config
    model_type = getattr(config, "model_type", None)
    base = getattr(model, getattr(model, "base_model_prefix", "model"), None)
    head = getattr(model, "lm_head", None)
    if base is None or not isinstance(head, nn.Linear):
        raise NotExportable(label, f"{type(model).__name__} is not a base model plus an `lm_head` Linear, "
                                   "which is what LlavaForConditionalGeneration rebuilds")
    expected = _auto_model_class_name(model_type) if model_type else None
    if expected != type(base).__name__:
        raise NotExportable(label, f"transformers' AutoModel builds {expected or 'nothing'} for model_type "
                                   f"{model_type!r}, not this LLM's {type(base).__name__}: plain transformers "
                                   "could not rebuild it without remote code")
    if head.bias is not None:
        raise NotExportable(label, f"{type(model).__name__}'s lm_head has a bias; LlavaForConditionalGeneration's "
                                   "lm_head has none")
    for attr in ("final_logit_softcapping", "logit_scale", "logits_scaling"):
        value = getattr(config, attr, None)
        if value not in (None, 1, 1.0):
            raise NotExportable(label, f"{type(model).__name__} post-processes its logits ({attr}={value}); "
                                       "LlavaForConditionalGeneration applies its lm_head only")
    prefix = getattr(model, "base_model_prefix", "model") + "."
    keys: dict[str, str] = {}
    for key in model.state_dict():
        if key.startswith(prefix):
            keys[key] = LM_PREFIX + key[len(prefix):]
        elif key.startswith("lm_head."):
            keys[key] = LM_HEAD_PREFIX + key[len("lm_head."):]
        else:
            raise NotExportable(label, f"weight {key!r} is outside the base model and the lm_head")
    text_config = config.to_dict()
    return HFLlavaPart(config=text_config, keys=keys,
                       notes=[f"LLM: {type(model).__name__} (model_type {model_type!r}), weights unchanged."])


def hf_vision_part(component: Any, encoder: Any, *, same_forward: bool = False) -> HFLlavaPart:
    """The tower part for an `HFVisionEncoder`: exactly that class, or a subclass whose plugin vouches
    (`same_forward`) that its forward selects what `HFVisionEncoder.forward` would."""
    from tinyllava.model.vision import HFVisionEncoder

    label = component_label(component)
    if not isinstance(encoder, HFVisionEncoder) or (type(encoder) is not HFVisionEncoder and not same_forward):
        raise NotExportable(label, f"its encoder {type(encoder).__name__} runs the vision model its own way, "
                                   "which LLaVA's tower call (pixel_values only) cannot reproduce")
    model = encoder.model
    config = model.config
    model_type = getattr(config, "model_type", None)
    expected = _auto_model_class_name(model_type) if model_type else None
    if expected != type(model).__name__:
        raise NotExportable(label, f"transformers' AutoModel builds {expected or 'nothing'} for model_type "
                                   f"{model_type!r}, not {type(model).__name__}")
    problems = []
    if encoder.final_norm_path:
        problems.append("final_norm: true applies the tower's final layer norm to the selected features; LLaVA "
                        "takes hidden states as they are (use final_norm: false)")
    if encoder.feature_index < 1:
        problems.append("feature_layer 0 selects the embeddings before any layer; LLaVA can only select the "
                        "output of a layer")
    if problems:
        raise NotExportable(label, "; ".join(problems))
    drops_first = encoder.strategy == "patch" and (encoder.has_cls or encoder.drop_first_patch)
    vision_config = config.to_dict()
    kept = int(encoder.feature_index)
    vision_config["num_hidden_layers"] = kept
    for key in ("out_features", "out_indices", "stage_names"):  # backbone fields naming the dropped layers
        vision_config.pop(key, None)
    keys = {key: TOWER_PREFIX + key[len("model."):] for key in encoder.state_dict() if key.startswith("model.")}
    stray = [key for key in encoder.state_dict() if not key.startswith("model.")]
    if stray:
        raise NotExportable(label, f"encoder weights outside the vision model: {stray[:3]}")
    strategy = "default" if drops_first else "full"
    notes = [
        f"Vision tower: {type(model).__name__} with its first {kept} layer(s), the ones the selected feature "
        f"uses (LLaVA reads the last of them: vision_feature_layer -1); "
        f"{'the first token is dropped' if drops_first else 'every token is kept'} "
        f"(vision_feature_select_strategy {strategy!r})."
    ]
    return HFLlavaPart(
        config=vision_config,
        keys=keys,
        llava={"vision_feature_layer": -1, "vision_feature_select_strategy": strategy},
        processor={
            "patch_size": int(config.patch_size),
            "num_additional_image_tokens": 1 if encoder.has_cls else 0,
            "vision_feature_select_strategy": strategy,
        },
        notes=notes,
    )
