"""CLIP vision tower: pretrained (hub id or local folder) or a fresh config for tiny from-scratch models."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from tinyllava.components.base import ComponentOptions
from tinyllava.components.vision_tower import FeatureSelectionOptions, VisionParts, VisionTower


class CLIPOptions(FeatureSelectionOptions):
    source: str | None = Field(None, description="hub id or local folder (CLIP or CLIP-vision checkpoint)")
    config: dict[str, Any] | None = Field(None, description="CLIPVisionConfig fields for a random init")
    image_mean: list[float] | None = Field(None, description="with `config`: normalisation mean (default CLIP's)")
    image_std: list[float] | None = Field(None, description="with `config`: normalisation std (default CLIP's)")

    @model_validator(mode="after")
    def _one_source(self) -> CLIPOptions:
        if (self.source is None) == (self.config is None):
            raise ValueError("give exactly one of `source` (pretrained) or `config` (random init)")
        return self


CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


class CLIPTower(VisionTower):
    Options: ClassVar[type[ComponentOptions]] = CLIPOptions
    model_types: ClassVar[tuple[str, ...]] = ("clip_vision_model",)

    @classmethod
    def default_image_processor(cls, vision_config: dict[str, Any]) -> Any:
        """As OpenAI's CLIP checkpoints ship it: shortest edge to the input size, centre crop, CLIP's mean/std."""
        import transformers

        processor_cls = getattr(transformers, "CLIPImageProcessorPil", transformers.CLIPImageProcessor)
        size = int(vision_config["image_size"])
        return processor_cls(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                             image_mean=CLIP_MEAN, image_std=CLIP_STD)

    def _wrap(self, model: Any) -> Any:
        from tinyllava.model.vision import HFVisionEncoder

        cfg = model.config
        opts: CLIPOptions = self.options  # type: ignore[assignment]
        prefix = "vision_model." if hasattr(model, "vision_model") else ""  # transformers < 5 nests it
        return HFVisionEncoder(
            model,
            layers_path=f"{prefix}encoder.layers",
            feature_layer=opts.feature_layer,
            strategy=opts.feature_strategy,
            has_cls=True,
            num_patches=(cfg.image_size // cfg.patch_size) ** 2,
            final_norm_path=f"{prefix}post_layernorm",
            apply_final_norm=opts.final_norm,
        )

    def build(self) -> VisionParts:
        import transformers
        from transformers import CLIPVisionConfig, CLIPVisionModel

        # torchvision is optional: prefer the PIL processor where transformers has one
        processor_cls = getattr(transformers, "CLIPImageProcessorPil", transformers.CLIPImageProcessor)

        opts: CLIPOptions = self.options  # type: ignore[assignment]
        if opts.config is not None:
            config = CLIPVisionConfig(**opts.config)
            model = CLIPVisionModel(config)
            size = config.image_size
            processor = processor_cls(
                size={"shortest_edge": size},
                crop_size={"height": size, "width": size},
                image_mean=opts.image_mean or CLIP_MEAN,
                image_std=opts.image_std or CLIP_STD,
            )
        else:
            model = CLIPVisionModel.from_pretrained(opts.source)
            processor = processor_cls.from_pretrained(opts.source)
        return VisionParts(self._wrap(model), processor)

    def from_config(self, vision_config: dict[str, Any], image_processor: Any) -> Any:
        from transformers import CLIPVisionConfig, CLIPVisionModel

        return self._wrap(CLIPVisionModel(CLIPVisionConfig.from_dict(vision_config)))

    def hf_llava_export(self, encoder: Any) -> Any:
        """LLaVA's own tower family: `patch` drops the CLS token (LLaVA's `default`), `cls_patch` keeps it."""
        from tinyllava.interop.export_parts import hf_vision_part

        return hf_vision_part(self, encoder)
