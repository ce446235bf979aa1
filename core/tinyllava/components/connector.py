"""Contract for connector plugins: (B, N, D_vision) -> (B, M, D_llm)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from tinyllava.components.base import Component

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


@dataclass(frozen=True)
class ForeignProjector:
    """A projector of another toolkit, in neutral words, for the import contract.

    kind: `mlp` (Linear, then depth-1 x [act, Linear]; weights keyed `0.weight`, `2.weight`, ... as in an
    nn.Sequential), `linear` (one Linear keyed `weight`/`bias`) or `identity`.
    """

    kind: str
    depth: int = 1
    act: str = "gelu"
    bias: bool = True


class Connector(Component):
    kind: ClassVar[str] = "connector"

    @classmethod
    def import_options(cls, projector: ForeignProjector) -> dict[str, Any] | None:
        """Options whose built module computes `projector` with its weights keyed as described, or None when
        this plugin cannot (importers ask every connector plugin)."""
        return None

    def build(self, vision_dim: int, llm_dim: int, num_vision_tokens: int) -> nn.Module:
        raise NotImplementedError
