"""The assembled model: LLM + vision tower + connector, with image features spliced into the embeddings.

Each image occupies `config.image_seq_len` IMAGE_TOKEN_INDEX positions in `input_ids` (the data
pipeline expands them), so the splice is a masked scatter: no re-padding, labels already aligned,
and left-padded batched generation works as for any causal LM.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from tinyllava.constants import IMAGE_TOKEN_INDEX
from tinyllava.model.config import TinyLlavaConfig


class TinyLlavaForConditionalGeneration(PreTrainedModel):
    config_class = TinyLlavaConfig
    base_model_prefix = "tinyllava"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    main_input_name = "input_ids"

    def __init__(
        self,
        config: TinyLlavaConfig,
        language_model: nn.Module,
        vision_tower: nn.Module,
        connector: nn.Module,
    ) -> None:
        super().__init__(config)
        self.language_model = language_model
        self.vision_tower = vision_tower
        self.connector = connector
        self.post_init()

    # -- embeddings delegate to the LM ---------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module | None:
        return self.language_model.get_output_embeddings()

    def _init_weights(self, module: nn.Module) -> None:  # components initialise themselves
        return

    # -- the splice ----------------------------------------------------------------------------
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(n_images, 3, H, W) -> (n_images, image_seq_len, D_llm)."""
        return self.connector(self.vision_tower(pixel_values))

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None) -> torch.Tensor:
        image_mask = input_ids == IMAGE_TOKEN_INDEX
        embeds = self.get_input_embeddings()(input_ids.masked_fill(image_mask, 0))
        n_positions = int(image_mask.sum())
        if n_positions == 0:
            return embeds  # text-only batch: the vision tower never runs
        if pixel_values is None:
            raise ValueError(f"input_ids hold {n_positions} image positions but no pixel_values were given")
        features = self.encode_images(pixel_values)
        if features.shape[0] * features.shape[1] != n_positions:
            raise ValueError(
                f"{features.shape[0]} image(s) give {features.shape[0] * features.shape[1]} features but "
                f"input_ids hold {n_positions} image positions (image_seq_len={self.config.image_seq_len})"
            )
        mask = image_mask.unsqueeze(-1).expand_as(embeds)
        return embeds.masked_scatter(mask, features.to(embeds.dtype))

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("give input_ids or inputs_embeds")
            inputs_embeds = self.embed(input_ids, pixel_values)
        if past_key_values is not None:
            kwargs["past_key_values"] = past_key_values
        if use_cache is not None:
            kwargs["use_cache"] = use_cache
        return self.language_model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids, labels=labels,
            **kwargs,
        )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        **generate_kwargs: Any,
    ) -> torch.Tensor:
        """Left-padded batched generation with a KV cache; returns only the new tokens."""
        embeds = self.embed(input_ids, pixel_values)
        if attention_mask is None:
            attention_mask = torch.ones(input_ids.shape, dtype=torch.long, device=input_ids.device)
        return self.language_model.generate(inputs_embeds=embeds, attention_mask=attention_mask, **generate_kwargs)
