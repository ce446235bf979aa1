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
from tinyllava.model.supervised_loss import (
    head_only_at,
    last_layer_attention,
    last_layer_row_modules,
    rows_only_at,
    supervised_loss,
    supervised_positions,
)


class TinyLlavaForConditionalGeneration(PreTrainedModel):
    config_class = TinyLlavaConfig
    base_model_prefix = "tinyllava"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    main_input_name = "input_ids"
    # in training, run the LM head (and the loss) at the supervised positions only; False: at every position
    supervised_head_only: bool = True
    # with it, the last decoder layer's feed-forward block and attention output run at those positions only
    supervised_last_layer_only: bool = True
    # the picked positions' rows padded to a multiple of this (see supervised_loss.padded_rows)
    supervised_row_multiple: int = 1

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
    def tower_trains(self) -> bool:
        """Whether any vision tower parameter (its own or an adapter's) is trained."""
        return any(p.requires_grad for p in self.vision_tower.parameters())

    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(n_images, 3, H, W) -> the tower's selected features (n_images, N, D_vision).

        A frozen tower runs without autograd and its output is detached: it never joins the graph,
        even when gradient checkpointing makes every PreTrainedModel's input embeddings require grad.
        """
        trains = self.tower_trains()
        with torch.set_grad_enabled(trains and torch.is_grad_enabled()):
            features = self.vision_tower(pixel_values)
        return features if trains else features.detach()

    def encode_images(self, pixel_values: torch.Tensor | None = None,
                      image_features: torch.Tensor | None = None) -> torch.Tensor:
        """(n_images, 3, H, W) -> (n_images, image_seq_len, D_llm).

        `image_features` (what `vision_features` returns, e.g. from a feature cache) skips the tower.
        """
        if image_features is None:
            if pixel_values is None:
                raise ValueError("give pixel_values or image_features")
            image_features = self.vision_features(pixel_values)
        connector_dtype = next(self.connector.parameters(), image_features).dtype
        return self.connector(image_features.to(connector_dtype))

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None,
              image_features: torch.Tensor | None = None) -> torch.Tensor:
        image_mask = input_ids == IMAGE_TOKEN_INDEX
        embeds = self.get_input_embeddings()(input_ids.masked_fill(image_mask, 0))
        n_positions = int(image_mask.sum())
        if n_positions == 0:
            return embeds  # text-only batch: the vision tower never runs
        if pixel_values is None and image_features is None:
            raise ValueError(f"input_ids hold {n_positions} image positions but no pixel_values (or image_features) "
                             f"were given")
        features = self.encode_images(pixel_values, image_features)
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
        image_features: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """`image_features` (the tower's outputs, e.g. from a feature cache) replace `pixel_values`: only the
        connector runs. In training (train mode, autograd on, labels given) the LM head runs at the supervised
        positions only: the returned logits are those positions', (1, n_trained, V). Otherwise (eval mode,
        no_grad, no labels) the LM computes every position as usual."""
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("give input_ids or inputs_embeds")
            inputs_embeds = self.embed(input_ids, pixel_values, image_features)
        if past_key_values is not None:
            kwargs["past_key_values"] = past_key_values
        if use_cache is not None:
            kwargs["use_cache"] = use_cache
        if labels is not None and self.training and torch.is_grad_enabled() and self.supervised_head_only:
            head = self.language_model.get_output_embeddings()
            if head is not None:
                return self._supervised_forward(head, inputs_embeds, attention_mask, position_ids, labels, kwargs)
        return self.language_model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids, labels=labels,
            **kwargs,
        )

    def _supervised_forward(self, head: nn.Module, inputs_embeds: torch.Tensor, attention_mask: Any,
                            position_ids: Any, labels: torch.Tensor, kwargs: dict[str, Any]) -> Any:
        num_items = kwargs.pop("num_items_in_batch", None)
        mask, targets = supervised_positions(labels, kwargs.pop("shift_labels", None))
        rows, attention = [], None
        if self.supervised_last_layer_only:
            rows, attention = last_layer_row_modules(self.language_model), last_layer_attention(self.language_model)
        multiple = self.supervised_row_multiple
        with head_only_at(head, mask, multiple) as state, rows_only_at(rows, mask, attention, multiple):
            out = self.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                      position_ids=position_ids, **kwargs)
        loss = supervised_loss(out.logits, mask, targets, picked=state.picked, num_items_in_batch=num_items)
        aux = getattr(out, "aux_loss", None)  # mixture-of-experts router loss, added as the LM would with labels
        coef = getattr(self.language_model.config, "router_aux_loss_coef", None)
        if aux is not None and coef:
            loss = loss + coef * aux.to(loss.device)
        fields = {k: v for k, v in out.items() if k != "loss"}
        return type(out)(loss=loss, **fields)

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
