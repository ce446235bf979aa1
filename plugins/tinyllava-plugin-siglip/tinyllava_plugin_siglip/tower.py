"""SigLIP and SigLIP2 (NaFlex) vision towers: pretrained (hub id or local folder) or a fresh tiny config.

Import-light like every component module: torch and transformers load inside the methods that use them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, model_validator

from tinyllava.components.base import ComponentOptions
from tinyllava.components.vision_tower import FeatureSelectionOptions, VisionParts, VisionTower

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from tinyllava.model.vision import HFVisionEncoder
    from tinyllava_plugin_siglip.encoder import Siglip2Encoder

SIGLIP_MEAN = [0.5, 0.5, 0.5]
SIGLIP_STD = [0.5, 0.5, 0.5]


class _SourceOptions(FeatureSelectionOptions):
    source: str | None = Field(None, description="hub id or local folder (full SigLIP model or vision-only)")
    config: dict[str, Any] | None = Field(None, description="vision config fields for a random init")
    image_mean: list[float] | None = Field(None, description="with `config`: normalisation mean (0.5)")
    image_std: list[float] | None = Field(None, description="with `config`: normalisation std (0.5)")

    @model_validator(mode="after")
    def _one_source(self) -> _SourceOptions:
        if (self.source is None) == (self.config is None):
            raise ValueError("give exactly one of `source` (pretrained) or `config` (random init)")
        if self.source is not None and (self.image_mean or self.image_std):
            raise ValueError("image_mean/image_std apply to `config` only; `source` brings its own processor")
        return self


class SiglipOptions(_SourceOptions):
    drop_first_patch: bool = Field(
        False,
        description="with feature_strategy=patch, drop token 0 although SigLIP has no CLS token; TinyLLaVA "
        "Factory does this (728 of 729 tokens for so400m-patch14-384), so its weights expect it",
    )


class Siglip2Options(_SourceOptions):
    image_size: int | None = Field(
        None, ge=1, description="square input resolution, a multiple of patch_size (default: position grid)"
    )


def processor_class(name: str) -> Any:
    """The PIL image processor when transformers has one: torchvision is an optional dependency."""
    import transformers

    return getattr(transformers, f"{name}Pil", None) or getattr(transformers, name)


def drop_pooling_head(model: nn.Module) -> None:
    """Remove the attention-pooling head: it runs after the last layer, so token features never use it.

    Removing it saves its parameters and keeps DDP free of parameters that never get a gradient; the
    config says so too, so a saved tower rebuilds without it.
    """
    if getattr(model, "head", None) is not None:
        del model.head
    model.use_head = False
    model.config.vision_use_head = False


def check_model_type(source: str, wanted: tuple[str, ...], hint: str) -> None:
    """Fail early, naming the right tower, when a checkpoint has the other SigLIP architecture."""
    from transformers import PretrainedConfig

    config, _ = PretrainedConfig.get_config_dict(source)
    model_type = config.get("model_type")
    if model_type is not None and model_type not in wanted:
        raise ValueError(f"{source} is a {model_type!r} checkpoint; {hint}")


def _height_width(size: Any) -> tuple[int, int]:
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    height, width = get("height"), get("width")
    if height is None or width is None:
        raise ValueError(f"the image processor must resize to a fixed height and width, not {size!r}")
    return int(height), int(width)


class SiglipTower(VisionTower):
    """`SiglipVisionModel`; also right for the fixed-resolution SigLIP2 checkpoints (model_type `siglip`)."""

    Options: ClassVar[type[ComponentOptions]] = SiglipOptions
    model_types: ClassVar[tuple[str, ...]] = ("siglip_vision_model",)
    has_cls_token: ClassVar[bool] = False

    @classmethod
    def import_options(cls, vision_config: dict[str, Any], *, feature_layer: int,
                       drop_first_token: bool) -> dict[str, Any]:
        """SigLIP has no class token: dropping the first token drops a real patch (`drop_first_patch`)."""
        options = super().import_options(vision_config, feature_layer=feature_layer,
                                         drop_first_token=drop_first_token)
        options["drop_first_patch"] = drop_first_token
        return options

    @classmethod
    def default_image_processor(cls, vision_config: dict[str, Any]) -> Any:
        """As Google's SigLIP checkpoints ship it: resize to the input size (aspect not kept), mean/std 0.5."""
        size = int(vision_config["image_size"])
        return processor_class("SiglipImageProcessor")(
            size={"height": size, "width": size}, image_mean=SIGLIP_MEAN, image_std=SIGLIP_STD
        )

    def _wrap(self, model: Any) -> HFVisionEncoder:
        from tinyllava.model.vision import HFVisionEncoder

        cfg = model.config
        opts: SiglipOptions = self.options  # type: ignore[assignment]
        drop_pooling_head(model)
        return HFVisionEncoder(
            model,
            layers_path="encoder.layers",
            feature_layer=opts.feature_layer,
            strategy=opts.feature_strategy,
            has_cls=False,
            num_patches=(cfg.image_size // cfg.patch_size) ** 2,
            final_norm_path="post_layernorm",
            apply_final_norm=opts.final_norm,
            drop_first_patch=opts.drop_first_patch,
        )

    def build(self) -> VisionParts:
        from transformers import SiglipVisionConfig, SiglipVisionModel

        processor_cls = processor_class("SiglipImageProcessor")
        opts: SiglipOptions = self.options  # type: ignore[assignment]
        if opts.config is not None:
            config = SiglipVisionConfig(**opts.config)
            model = SiglipVisionModel(config)
            size = config.image_size
            processor = processor_cls(
                size={"height": size, "width": size},
                image_mean=opts.image_mean or SIGLIP_MEAN,
                image_std=opts.image_std or SIGLIP_STD,
            )
        else:
            wanted = ("siglip", "siglip_vision_model")
            check_model_type(opts.source, wanted, "use the `siglip2` tower for NaFlex checkpoints")
            model = SiglipVisionModel.from_pretrained(opts.source)
            processor = processor_cls.from_pretrained(opts.source)
        return VisionParts(self._wrap(model), processor)

    def from_config(self, vision_config: dict[str, Any], image_processor: Any) -> nn.Module:
        from transformers import SiglipVisionConfig, SiglipVisionModel

        return self._wrap(SiglipVisionModel(SiglipVisionConfig.from_dict(vision_config)))

    def hf_llava_export(self, encoder: Any) -> Any:
        """No CLS token: every patch is kept (LLaVA's `full`), or the first patch dropped with `drop_first_patch`
        (LLaVA's `default`, with no additional image token)."""
        from tinyllava.interop.export_parts import hf_vision_part

        return hf_vision_part(self, encoder)


class Siglip2Tower(VisionTower):
    """`Siglip2VisionModel` (the NaFlex checkpoints, model_type `siglip2`) at one fixed square resolution.

    The core collates (3, H, W) pixels and splices a fixed number of image tokens, so images are resized
    to `image_size` (aspect ratio not kept, as SigLIP does); the model resizes its position grid to fit.
    """

    Options: ClassVar[type[ComponentOptions]] = Siglip2Options

    def _wrap(self, model: Any, height: int, width: int) -> Siglip2Encoder:
        from tinyllava_plugin_siglip.encoder import Siglip2Encoder

        opts: Siglip2Options = self.options  # type: ignore[assignment]
        patch = int(model.config.patch_size)
        if height % patch or width % patch:
            raise ValueError(f"siglip2 image size {height}x{width} is not a multiple of patch_size {patch}")
        drop_pooling_head(model)
        return Siglip2Encoder(
            model,
            patch_size=patch,
            layers_path="encoder.layers",
            feature_layer=opts.feature_layer,
            strategy=opts.feature_strategy,
            num_patches=(height // patch) * (width // patch),
            final_norm_path="post_layernorm",
            apply_final_norm=opts.final_norm,
        )

    def _size(self, config: Any) -> int:
        opts: Siglip2Options = self.options  # type: ignore[assignment]
        return opts.image_size or math.isqrt(int(config.num_patches)) * int(config.patch_size)

    def build(self) -> VisionParts:
        from transformers import Siglip2VisionConfig, Siglip2VisionModel
        from transformers.image_processing_utils import ImageProcessingMixin
        from transformers.image_utils import PILImageResampling

        processor_cls = processor_class("SiglipImageProcessor")
        opts: Siglip2Options = self.options  # type: ignore[assignment]
        if opts.config is not None:
            model = Siglip2VisionModel(Siglip2VisionConfig(**opts.config))
            settings: dict[str, Any] = {
                "image_mean": opts.image_mean or SIGLIP_MEAN, "image_std": opts.image_std or SIGLIP_STD,
            }
        else:
            check_model_type(
                opts.source, ("siglip2", "siglip2_vision_model"),
                "fixed-resolution SigLIP2 checkpoints have the SigLIP architecture: use the `siglip` tower",
            )
            model = Siglip2VisionModel.from_pretrained(opts.source)
            saved, _ = ImageProcessingMixin.get_image_processor_dict(opts.source)
            keys = ("image_mean", "image_std", "resample", "rescale_factor")
            settings = {key: saved[key] for key in keys if key in saved}
        size = self._size(model.config)
        settings.setdefault("resample", PILImageResampling.BILINEAR)  # as the NaFlex processor resizes
        processor = processor_cls(size={"height": size, "width": size}, **settings)
        return VisionParts(self._wrap(model, size, size), processor)

    def from_config(self, vision_config: dict[str, Any], image_processor: Any) -> nn.Module:
        from transformers import Siglip2VisionConfig, Siglip2VisionModel

        model = Siglip2VisionModel(Siglip2VisionConfig.from_dict(vision_config))
        height, width = _height_width(image_processor.size)  # the pixels the checkpoint was trained on
        return self._wrap(model, height, width)

    def hf_llava_export(self, encoder: Any) -> Any:
        from tinyllava.interop.export_contract import NotExportable, component_label

        raise NotExportable(component_label(self), "the SigLIP2 NaFlex model takes patches plus their grid shape, "
                                                   "while LLaVA calls its tower with pixel_values only")
