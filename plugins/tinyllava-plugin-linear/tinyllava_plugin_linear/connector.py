"""The two simplest connectors: one linear projection, and none at all (the identity)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from tinyllava.components.base import ComponentOptions
from tinyllava.components.connector import Connector, ForeignProjector

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


class LinearConnector(Connector):
    """`Linear(D_vision, D_llm)`: TinyLLaVA Factory's `linear`; keeps the number of image tokens."""

    class Options(ComponentOptions):
        bias: bool = Field(True, description="give the projection a bias (the original has one)")

    @classmethod
    def import_options(cls, projector: ForeignProjector) -> dict[str, Any] | None:
        return {"bias": projector.bias} if projector.kind == "linear" else None

    def build(self, vision_dim: int, llm_dim: int, num_vision_tokens: int) -> nn.Module:
        from torch import nn

        return nn.Linear(vision_dim, llm_dim, bias=self.options.bias)

    def hf_llava_export(self, module: Any) -> Any:
        """LLaVA's projector as this Linear, then the identity activation (`linear`), then an identity Linear:
        exact (x @ I = x), for the price of one llm_dim x llm_dim matrix."""
        import torch

        from tinyllava.interop.export_contract import PROJECTOR_PREFIX, HFLlavaPart

        keys = {key: f"{PROJECTOR_PREFIX}linear_1.{key}" for key in module.state_dict()}
        dim = int(module.out_features)
        extra = {f"{PROJECTOR_PREFIX}linear_2.weight": torch.eye(dim, dtype=module.weight.dtype)}
        if module.bias is not None:
            extra[f"{PROJECTOR_PREFIX}linear_2.bias"] = torch.zeros(dim, dtype=module.weight.dtype)
        llava = {"projector_hidden_act": "linear", "multimodal_projector_bias": module.bias is not None}
        return HFLlavaPart(keys=keys, extra=extra, llava=llava,
                           notes=["Connector: the Linear as linear_1, identity activation, identity linear_2."])


class IdentityConnector(Connector):
    """Passes the vision features through unchanged, so the tower must already speak the LLM's width."""

    class Options(ComponentOptions):
        pass

    @classmethod
    def import_options(cls, projector: ForeignProjector) -> dict[str, Any] | None:
        return {} if projector.kind == "identity" else None

    def hf_llava_export(self, module: Any) -> Any:
        from tinyllava.interop.export_contract import refuse

        refuse(self, "it has no weights and passes features through; LLaVA's projector always applies two "
                     'Linear layers, which this export does not invent')

    def build(self, vision_dim: int, llm_dim: int, num_vision_tokens: int) -> nn.Module:
        from torch import nn

        if vision_dim != llm_dim:
            raise ValueError(
                f"connector 'identity' needs the vision tower's width to equal the LLM's hidden size, "
                f"but the tower gives {vision_dim} and the LLM expects {llm_dim}; "
                f"use connector 'linear' or 'mlp' to project between them"
            )
        return nn.Identity()
