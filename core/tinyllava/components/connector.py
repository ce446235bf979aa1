"""Contract for connector plugins: (B, N, D_vision) -> (B, M, D_llm)."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from tinyllava.components.base import Component

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from tinyllava.interop.export_contract import HFLlavaPart


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

    @abstractmethod
    def build(self, vision_dim: int, llm_dim: int, num_vision_tokens: int) -> nn.Module:
        """A module mapping image features (B, num_vision_tokens, vision_dim) to (B, M, llm_dim) tokens."""

    # -- export contract (transformers' LLaVA layout) -------------------------------------------------
    def hf_llava_export(self, module: nn.Module) -> HFLlavaPart:
        """This connector as LLaVA's `multi_modal_projector` (linear_1, activation, linear_2): where the built
        module's weights go and the LlavaConfig fields (`projector_hidden_act`, `multimodal_projector_bias`).
        Raise `NotExportable` when that projector cannot compute what `module` computes; the default refuses."""
        from tinyllava.interop.export_contract import not_exportable_by_default

        raise not_exportable_by_default(self)
