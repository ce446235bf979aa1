"""The LLaVA-style MLP projector."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from tinyllava.components.base import ComponentOptions
from tinyllava.components.connector import Connector

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


class MLPOptions(ComponentOptions):
    depth: int = Field(2, ge=1, le=8, description="number of Linear layers (GELU between them)")
    position_embedding: bool = Field(
        False,
        description="add a learned embedding per image-token position to the output, so the LLM can look a "
        "token up by where it is in the image (off: TinyLLaVA Factory's mlp2x_gelu weights map one to one)",
    )


class MLPConnector(Connector):
    Options: ClassVar[type[ComponentOptions]] = MLPOptions

    def build(self, vision_dim: int, llm_dim: int, num_vision_tokens: int) -> nn.Module:
        from torch import nn

        layers: list[nn.Module] = [nn.Linear(vision_dim, llm_dim)]
        for _ in range(self.options.depth - 1):
            layers += [nn.GELU(), nn.Linear(llm_dim, llm_dim)]
        mlp = nn.Sequential(*layers)
        if not self.options.position_embedding:
            return mlp
        from tinyllava_plugin_mlp.modules import WithPositions

        return WithPositions(mlp, num_vision_tokens, llm_dim)
