"""The LLaVA-style MLP projector."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator

from tinyllava.components.base import ComponentOptions
from tinyllava.components.connector import Connector, ForeignProjector

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


class MLPOptions(ComponentOptions):
    depth: int = Field(2, ge=1, le=8, description="number of Linear layers (GELU between them)")
    position_embedding: Literal["none", "flat", "grid"] = Field(
        "none",
        description="add a learned position to each image token, so the LLM can look a token up by where it is "
        "in the image: 'flat' learns one vector per token, 'grid' a row vector plus a column vector (a square "
        "grid of tokens; a place named in two words, such as 'top left', is matched word by word); 'none' keeps "
        "TinyLLaVA Factory's mlp2x_gelu weights one to one",
    )

    @field_validator("position_embedding", mode="before")
    @classmethod
    def _accept_booleans(cls, value: Any) -> Any:
        """true/false, the option's first form, still read: true meant one vector per token."""
        if isinstance(value, bool):
            return "flat" if value else "none"
        return value


class MLPConnector(Connector):
    Options: ClassVar[type[ComponentOptions]] = MLPOptions

    @classmethod
    def import_options(cls, projector: ForeignProjector) -> dict[str, Any] | None:
        """TinyLLaVA Factory's `mlp{N}x_gelu` and LLaVA's projector (linear, gelu, linear; with biases)."""
        if projector.kind == "mlp" and projector.act == "gelu" and projector.bias:
            return {"depth": projector.depth}
        return None

    def build(self, vision_dim: int, llm_dim: int, num_vision_tokens: int) -> nn.Module:
        from torch import nn

        layers: list[nn.Module] = [nn.Linear(vision_dim, llm_dim)]
        for _ in range(self.options.depth - 1):
            layers += [nn.GELU(), nn.Linear(llm_dim, llm_dim)]
        mlp = nn.Sequential(*layers)
        if self.options.position_embedding == "none":
            return mlp
        from tinyllava_plugin_mlp.modules import WithGridPositions, WithPositions

        wrapper = WithGridPositions if self.options.position_embedding == "grid" else WithPositions
        return wrapper(mlp, num_vision_tokens, llm_dim)

    def hf_llava_export(self, module: Any) -> Any:
        """LLaVA's projector is this MLP at depth 2 (Linear, GELU, Linear, with biases) and nothing else."""
        from tinyllava.interop.export_contract import PROJECTOR_PREFIX, HFLlavaPart, NotExportable, component_label

        label = component_label(self)
        if self.options.position_embedding != "none":
            raise NotExportable(label, f"position_embedding {self.options.position_embedding!r} adds learned "
                                       "positions to the image tokens; LLaVA's projector has none")
        if self.options.depth != 2:
            raise NotExportable(label, f"depth {self.options.depth}: LLaVA's projector is exactly two Linear "
                                       "layers with a GELU between them")
        keys = {}
        for key in module.state_dict():
            index, _, rest = key.partition(".")
            keys[key] = PROJECTOR_PREFIX + {"0": "linear_1.", "2": "linear_2."}[index] + rest
        return HFLlavaPart(keys=keys, llava={"projector_hidden_act": "gelu", "multimodal_projector_bias": True},
                           notes=["Connector: the 2-layer GELU MLP, weights unchanged."])
