"""Contract for connector plugins: (B, N, D_vision) -> (B, M, D_llm)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from tinyllava.components.base import Component

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


class Connector(Component):
    kind: ClassVar[str] = "connector"

    def build(self, vision_dim: int, llm_dim: int, num_vision_tokens: int) -> nn.Module:
        raise NotImplementedError
