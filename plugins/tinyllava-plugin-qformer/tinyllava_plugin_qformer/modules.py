"""The Q-Former projector module, built on transformers' `Blip2QFormerModel` (imported only by `build`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import Blip2QFormerConfig, Blip2QFormerModel


def qformer_config(options: Any, vision_dim: int) -> Blip2QFormerConfig:
    """A Q-Former config made from the options alone (no hub download, unlike the original)."""
    return Blip2QFormerConfig(
        hidden_size=options.hidden_size,
        num_hidden_layers=options.num_layers,
        num_attention_heads=options.num_heads,
        intermediate_size=options.intermediate_size or 4 * options.hidden_size,
        hidden_dropout_prob=options.dropout,
        attention_probs_dropout_prob=options.dropout,
        layer_norm_eps=options.layer_norm_eps,
        initializer_range=options.initializer_range,
        cross_attention_frequency=options.cross_attention_frequency,
        encoder_hidden_size=vision_dim,
        use_qformer_text_input=False,  # queries only: no text feed-forward weights that would never train
    )


class QFormerProjector(nn.Module):
    """(B, N, D_vision) -> (B, num_queries, D_llm): queries cross-attend to the image, then a projection."""

    def __init__(self, options: Any, *, vision_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.query_tokens = nn.Parameter(torch.empty(1, options.num_queries, options.hidden_size))
        nn.init.normal_(self.query_tokens, mean=0.0, std=options.initializer_range)
        self.qformer = Blip2QFormerModel(qformer_config(options, vision_dim))
        self.projector = nn.Linear(options.hidden_size, llm_dim)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        queries = self.query_tokens.expand(image_features.shape[0], -1, -1)
        hidden = self.qformer(query_embeds=queries, encoder_hidden_states=image_features).last_hidden_state
        return self.projector(hidden.to(self.projector.weight.dtype))
