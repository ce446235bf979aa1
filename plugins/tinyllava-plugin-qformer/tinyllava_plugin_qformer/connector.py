"""The `qformer` connector: options and build; the module itself lives in `modules` (torch-heavy)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from tinyllava.components.base import ComponentOptions
from tinyllava.components.connector import Connector

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


class QFormerConnector(Connector):
    """BLIP-2 style Q-Former: `num_queries` learned queries read the image, so M = num_queries.

    Defaults follow TinyLLaVA Factory's `qformer` (BERT-base geometry, cross-attention every 2nd
    layer), but the geometry is built locally from these options: nothing is fetched from a hub.
    """

    class Options(ComponentOptions):
        num_queries: int = Field(128, ge=1, description="learned query tokens = image tokens given to the LLM")
        num_layers: int = Field(12, ge=1, description="Q-Former transformer layers")
        hidden_size: int = Field(768, ge=1, description="width of the queries inside the Q-Former")
        num_heads: int = Field(12, ge=1, description="attention heads (must divide hidden_size)")
        intermediate_size: int | None = Field(None, ge=1, description="feed-forward width; default 4 * hidden_size")
        cross_attention_frequency: int = Field(
            2, ge=1, description="layer i cross-attends to the image when i % frequency == 0"
        )
        dropout: float = Field(0.1, ge=0.0, lt=1.0, description="hidden and attention dropout")
        layer_norm_eps: float = Field(1e-12, gt=0.0)
        initializer_range: float = Field(0.02, gt=0.0, description="std of the initial weights and queries")

        @model_validator(mode="after")
        def _heads_divide_width(self) -> QFormerConnector.Options:
            if self.hidden_size % self.num_heads:
                raise ValueError(f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}")
            return self

    def hf_llava_export(self, module: Any) -> Any:
        from tinyllava.interop.export_contract import refuse

        refuse(self, "learned queries cross-attend to the image (M = num_queries tokens); LLaVA's projector "
                     'maps each image token on its own through Linear, GELU, Linear')

    def build(self, vision_dim: int, llm_dim: int, num_vision_tokens: int) -> nn.Module:
        from tinyllava_plugin_qformer.modules import QFormerProjector

        return QFormerProjector(self.options, vision_dim=vision_dim, llm_dim=llm_dim)
