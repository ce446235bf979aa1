"""Build the assembled model from component specs: fresh (from the plugins) or as a checkpoint skeleton."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from tinyllava.components.connector import Connector
from tinyllava.components.llm import LLM
from tinyllava.components.vision_tower import VisionTower
from tinyllava.model.assembly import TinyLlavaForConditionalGeneration
from tinyllava.model.config import TinyLlavaConfig


@dataclass
class Assembled:
    model: TinyLlavaForConditionalGeneration
    tokenizer: Any
    image_processor: Any


def _spec_dict(component: Any) -> dict[str, Any]:
    return {"name": component.name, "options": component.options.model_dump(mode="json")}


def _connector_tokens(connector: torch.nn.Module, num_tokens: int, vision_dim: int) -> int:
    from tinyllava.training.sharded_init import gathered

    param = next(connector.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    with torch.no_grad(), gathered(connector):  # built partitioned under ZeRO-3's sharded init
        out = connector(torch.zeros(1, num_tokens, vision_dim, dtype=dtype))
    return int(out.shape[1])


def assemble(
    llm: LLM,
    tower: VisionTower,
    connector: Connector,
    *,
    language_model: Any,
    tokenizer: Any,
    encoder: Any,
    image_processor: Any,
    image_preprocess: str,
    max_length: int,
) -> Assembled:
    weight = language_model.get_input_embeddings().weight
    llm_dim = int(getattr(weight, "ds_shape", weight.shape)[1])  # ZeRO-3's sharded init leaves a slice here
    projector = connector.build(encoder.hidden_size, llm_dim, encoder.num_tokens)
    image_seq_len = _connector_tokens(projector, encoder.num_tokens, encoder.hidden_size)
    text_config = language_model.config.to_dict()
    vision_config = encoder.config.to_dict()
    config = TinyLlavaConfig(
        components={"llm": _spec_dict(llm), "vision_tower": _spec_dict(tower), "connector": _spec_dict(connector)},
        text_config=text_config,
        vision_config=vision_config,
        hidden_size=llm_dim,
        vision_hidden_size=encoder.hidden_size,
        num_vision_tokens=encoder.num_tokens,
        image_seq_len=image_seq_len,
        image_preprocess=image_preprocess,
        model_max_length=max_length,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = TinyLlavaForConditionalGeneration(config, language_model, encoder, projector)
    return Assembled(model, tokenizer, image_processor)


def build_fresh(registry: Any, model_spec: Any) -> Assembled:
    """The model a spec describes, weights from each component's own source (pretrained or random)."""
    llm: LLM = registry.create("llm", model_spec.llm.name, model_spec.llm.options)  # type: ignore[assignment]
    tower: VisionTower = registry.create(  # type: ignore[assignment]
        "vision_tower", model_spec.vision_tower.name, model_spec.vision_tower.options
    )
    connector: Connector = registry.create(  # type: ignore[assignment]
        "connector", model_spec.connector.name, model_spec.connector.options
    )
    language_model, tokenizer = llm.build()
    tokenizer = llm.prepare_tokenizer(tokenizer)
    encoder, image_processor = tower.build()
    return assemble(
        llm, tower, connector,
        language_model=language_model, tokenizer=tokenizer, encoder=encoder, image_processor=image_processor,
        image_preprocess=model_spec.image_preprocess, max_length=model_spec.max_length,
    )
