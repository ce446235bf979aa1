"""MoF (Mixture of Features) vision tower: CLIP and DINOv2 on the same pixels, tokens interleaved.

Import-light like every component module; the two towers are the clip and dinov2 plugins' own, fetched
through the registry (a plugin never imports another plugin), so loading, feature selection and register
handling behave exactly as when each is used alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator, model_validator

from tinyllava.components.base import ComponentOptions
from tinyllava.components.vision_tower import FeatureSelectionOptions, VisionParts, VisionTower

if TYPE_CHECKING:  # pragma: no cover
    from tinyllava_plugin_mof.modules import MoFEncoder

SHARED = ("feature_layer", "feature_strategy", "final_norm")


def tower_class(name: str) -> type[VisionTower]:
    """The `clip` or `dinov2` tower class, as their plugins register it."""
    from tinyllava.plugins.registry import get_registry

    return get_registry().component_class("vision_tower", name)  # type: ignore[return-value]


class MoFOptions(FeatureSelectionOptions):
    clip: dict[str, Any] = Field(
        description="the clip tower's options: {source: ...} or {config: ...} (plus image_mean/image_std); "
        "its image processor prepares the pixels for both towers"
    )
    dinov2: dict[str, Any] = Field(description="the dinov2 tower's options: {source: ...} or {config: ...}")
    renormalize_dinov2: bool = Field(
        False,
        description="false (TinyLLaVA Factory): DINOv2 sees the CLIP-normalised pixels; true: they are "
        "re-normalised with DINOv2's ImageNet mean/std first",
    )

    @field_validator("clip", "dinov2")
    @classmethod
    def _no_per_tower_selection(cls, value: dict[str, Any]) -> dict[str, Any]:
        both = sorted(set(value) & set(SHARED))
        if both:
            raise ValueError(f"{', '.join(both)}: set at the mof level, where it applies to both towers")
        return value

    @model_validator(mode="after")
    def _sub_options_valid(self) -> MoFOptions:
        shared = {key: getattr(self, key) for key in SHARED}
        for_dinov2 = sorted({"image_mean", "image_std"} & set(self.dinov2))
        if for_dinov2:
            raise ValueError(f"dinov2.{for_dinov2[0]}: mof prepares pixels with the clip processor only")
        tower_class("clip").Options.model_validate({**self.clip, **shared})
        tower_class("dinov2").Options.model_validate({**self.dinov2, **shared})
        return self


class MoFTower(VisionTower):
    """Output (B, 2N, D) ordered clip0, dino0, clip1, dino1, ...; both towers must share width and N."""

    Options: ClassVar[type[ComponentOptions]] = MoFOptions

    def hf_llava_export(self, encoder: Any) -> Any:
        from tinyllava.interop.export_contract import refuse

        refuse(self, 'it runs two towers (CLIP and DINOv2) and interleaves their tokens; LLaVA has one tower')

    def _towers(self) -> tuple[Any, Any]:
        opts: MoFOptions = self.options  # type: ignore[assignment]
        shared = {key: getattr(opts, key) for key in SHARED}
        clip = tower_class("clip")({**opts.clip, **shared}, name="clip")
        return clip, tower_class("dinov2")({**opts.dinov2, **shared}, name="dinov2")

    def _combine(self, clip: Any, dinov2: Any, image_processor: Any) -> MoFEncoder:
        from tinyllava_plugin_mof.modules import MoFEncoder

        opts: MoFOptions = self.options  # type: ignore[assignment]
        stats = None
        if opts.renormalize_dinov2:  # the statistics the CLIP processor normalised with
            stats = (list(image_processor.image_mean), list(image_processor.image_std))
        return MoFEncoder(clip, dinov2, stats)

    def build(self) -> VisionParts:
        clip_tower, dinov2_tower = self._towers()
        clip, processor = clip_tower.build()
        dinov2 = dinov2_tower.wrap(dinov2_tower.load_model(), processor)  # DINOv2 sees CLIP's pixels
        return VisionParts(self._combine(clip, dinov2, processor), processor)

    def from_config(self, vision_config: dict[str, Any], image_processor: Any) -> MoFEncoder:
        if not {"clip", "dinov2"} <= set(vision_config):
            raise ValueError("a mof vision_config holds the `clip` and `dinov2` configs; this one does not")
        clip_tower, dinov2_tower = self._towers()
        clip = clip_tower.from_config(vision_config["clip"], image_processor)
        dinov2 = dinov2_tower.from_config(vision_config["dinov2"], image_processor)
        return self._combine(clip, dinov2, image_processor)
