"""The `resampler` connector: options and build; the module itself lives in `modules` (torch-heavy)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from tinyllava.components.base import ComponentOptions
from tinyllava.components.connector import Connector

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


class ResamplerConnector(Connector):
    """Perceiver resampler: `num_queries` learned latents read the image, so M = num_queries.

    Defaults follow TinyLLaVA Factory's `resampler` (128 latents, 3 layers, 8 heads of 64); the
    latents live at the LLM's width, after a linear projection of the vision features.
    """

    class Options(ComponentOptions):
        num_queries: int = Field(128, ge=1, description="learned latents = image tokens given to the LLM")
        depth: int = Field(3, ge=1, description="attention + feed-forward layers")
        num_heads: int = Field(8, ge=1, description="attention heads")
        head_dim: int = Field(64, ge=1, description="width of each attention head")
        ff_mult: int = Field(4, ge=1, description="feed-forward width as a multiple of the LLM's width")

    def hf_llava_export(self, module: Any) -> Any:
        from tinyllava.interop.export_contract import refuse

        refuse(self, "learned latents attend to the image (M = num_queries tokens); LLaVA's projector maps "
                     'each image token on its own through Linear, GELU, Linear')

    def build(self, vision_dim: int, llm_dim: int, num_vision_tokens: int) -> nn.Module:
        from tinyllava_plugin_resampler.modules import PerceiverResampler

        o = self.options
        return PerceiverResampler(
            vision_dim,
            llm_dim,
            num_queries=o.num_queries,
            depth=o.depth,
            num_heads=o.num_heads,
            head_dim=o.head_dim,
            ff_mult=o.ff_mult,
        )
