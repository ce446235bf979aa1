"""Contract for vision-tower plugins: an image processor plus an encoder that returns (B, N, D)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

from pydantic import Field

from tinyllava.components.base import Component, ComponentOptions

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


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

    def build(self) -> VisionParts:
        raise NotImplementedError

    def from_config(self, vision_config: dict[str, Any], image_processor: Any) -> nn.Module:
        """An uninitialised encoder with the saved architecture, used when loading a checkpoint."""
        raise NotImplementedError
