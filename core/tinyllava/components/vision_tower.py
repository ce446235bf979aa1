"""Contract for vision-tower plugins: an image processor plus an encoder that returns (B, N, D)."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

from pydantic import Field

from tinyllava.components.base import Component, ComponentOptions

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from tinyllava.interop.export_contract import HFLlavaPart


class VisionParts(NamedTuple):
    encoder: nn.Module
    image_processor: Any


class FeatureSelectionOptions(ComponentOptions):
    """Which hidden states become image tokens; shared by every tower."""

    feature_layer: int = Field(-2, description="hidden-state index (-1: last layer, -2: penultimate)")
    feature_strategy: Literal["patch", "cls_patch", "full"] = Field(
        "patch", description="patch: drop the leading CLS token; cls_patch/full: keep every token"
    )
    final_norm: bool = Field(False, description="apply the tower's final layer norm to the selected features")


class VisionTower(Component):
    """Builds an encoder module (exposing `hidden_size` and `num_tokens`) and its image processor."""

    kind: ClassVar[str] = "vision_tower"
    Options: ClassVar[type[ComponentOptions]] = FeatureSelectionOptions
    #: transformers config `model_type`s this plugin's `from_config` builds; importers pick the tower by them
    model_types: ClassVar[tuple[str, ...]] = ()
    #: whether hidden states start with a class token (what "drop the first token" removes)
    has_cls_token: ClassVar[bool] = True

    # -- import contract (checkpoints from other toolkits) --------------------------------------------
    @classmethod
    def adopts(cls, model_type: str) -> bool:
        """Whether an imported checkpoint whose vision config has this `model_type` can become this tower."""
        return model_type in cls.model_types

    @classmethod
    def import_options(cls, vision_config: dict[str, Any], *, feature_layer: int,
                       drop_first_token: bool) -> dict[str, Any]:
        """Options that select what the foreign model selected: hidden state `feature_layer`, without its first
        token when `drop_first_token` (TinyLLaVA Factory's `patch`, LLaVA's `default`), else every token."""
        skip = {"model_type", "architectures", "transformers_version", "_name_or_path", "torch_dtype", "dtype"}
        return {
            "config": {k: v for k, v in vision_config.items() if k not in skip},
            "feature_layer": feature_layer,
            "feature_strategy": "patch" if drop_first_token else "cls_patch",
        }

    @classmethod
    def default_image_processor(cls, vision_config: dict[str, Any]) -> Any:
        """The image processor the family's published checkpoints ship, for an import whose source has none."""
        raise NotImplementedError(f"{cls.__name__} cannot make a default image processor")

    @abstractmethod
    def build(self) -> VisionParts:
        """The encoder (an nn.Module with `hidden_size` and `num_tokens`, mapping pixels (B, 3, H, W) to features
        (B, num_tokens, hidden_size)) and its image processor, from the options."""

    @abstractmethod
    def from_config(self, vision_config: dict[str, Any], image_processor: Any) -> nn.Module:
        """An uninitialised encoder with the saved architecture, used when loading a checkpoint."""

    # -- export contract (transformers' LLaVA layout) -------------------------------------------------
    def hf_llava_export(self, encoder: nn.Module) -> HFLlavaPart:
        """This tower as LlavaForConditionalGeneration's vision tower: its `vision_config`, where its weights go,
        the LlavaConfig feature selection and the processor's `patch_size` / `num_additional_image_tokens`
        (`tinyllava.interop.export_parts.hf_vision_part` serves `HFVisionEncoder` towers). Raise `NotExportable`
        when LLaVA cannot select the same features; the default refuses."""
        from tinyllava.interop.export_contract import not_exportable_by_default

        raise not_exportable_by_default(self)
