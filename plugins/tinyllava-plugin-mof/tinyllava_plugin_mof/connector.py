"""The mof_mlp connector: one MLP per tower over MoF's interleaved tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from tinyllava.components.base import ComponentOptions
from tinyllava.components.connector import Connector

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


class MoFMLPOptions(ComponentOptions):
    depth: int = Field(2, ge=1, le=8, description="Linear layers per MLP, GELU between (2: the original)")


class MoFMLPConnector(Connector):
    """(B, 2N, D_vision) interleaved clip/dinov2 tokens -> (B, 2N, D_llm), the order kept."""

    Options: ClassVar[type[ComponentOptions]] = MoFMLPOptions

    def hf_llava_export(self, module: Any) -> Any:
        from tinyllava.interop.export_contract import refuse

        refuse(self, 'it projects interleaved CLIP and DINOv2 tokens with two MLPs; LLaVA has one tower and '
                     'one projector')

    def build(self, vision_dim: int, llm_dim: int, num_vision_tokens: int) -> nn.Module:
        from tinyllava_plugin_mof.modules import MoFMLP

        if num_vision_tokens % 2:
            raise ValueError(
                f"mof_mlp expects the mof tower's interleaved clip/dinov2 tokens (an even count), "
                f"got {num_vision_tokens}"
            )
        return MoFMLP(vision_dim, llm_dim, self.options.depth)
