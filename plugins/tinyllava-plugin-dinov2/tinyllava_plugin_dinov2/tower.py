"""DINOv2 vision tower (plain or with register tokens): pretrained (hub id or local folder) or a tiny config.

Import-light like every component module: torch and transformers load inside the methods that use them.
The public `load_model` / `wrap` split lets other towers (MoF) feed DINOv2 pixels prepared for another model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, model_validator

from tinyllava.components.base import ComponentOptions
from tinyllava.components.vision_tower import FeatureSelectionOptions, VisionParts, VisionTower

if TYPE_CHECKING:  # pragma: no cover
    from tinyllava_plugin_dinov2.encoder import Dinov2Encoder

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
REGISTERS_TYPE = "dinov2_with_registers"


class Dinov2Options(FeatureSelectionOptions):
    source: str | None = Field(None, description="hub id or local folder (facebook/dinov2-*)")
    config: dict[str, Any] | None = Field(
        None,
        description="Dinov2Config fields for a random init; `num_register_tokens` (or model_type "
        "dinov2_with_registers) builds the register variant",
    )
    image_mean: list[float] | None = Field(None, description="with `config`: normalisation mean (ImageNet)")
    image_std: list[float] | None = Field(None, description="with `config`: normalisation std (ImageNet)")

    @model_validator(mode="after")
    def _one_source(self) -> Dinov2Options:
        if (self.source is None) == (self.config is None):
            raise ValueError("give exactly one of `source` (pretrained) or `config` (random init)")
        if self.source is not None and (self.image_mean or self.image_std):
            raise ValueError("image_mean/image_std apply to `config` only; `source` brings its own processor")
        return self


def has_registers(config: dict[str, Any]) -> bool:
    return config.get("model_type") == REGISTERS_TYPE or "num_register_tokens" in config


def model_classes(registers: bool) -> tuple[Any, Any]:
    """(config class, model class) for the plain or the register variant."""
    import transformers

    if registers:
        return transformers.Dinov2WithRegistersConfig, transformers.Dinov2WithRegistersModel
    return transformers.Dinov2Config, transformers.Dinov2Model


def processor_class() -> Any:
    """The PIL image processor when transformers has one: torchvision is an optional dependency."""
    import transformers

    return getattr(transformers, "BitImageProcessorPil", None) or transformers.BitImageProcessor


def pixel_size(image_processor: Any) -> tuple[int, int]:
    """(height, width) of the pixels the processor produces; the token count follows from it."""

    def get(size: Any, key: str) -> Any:
        if size is None:
            return None
        return size.get(key) if isinstance(size, dict) else getattr(size, key, None)

    crop = getattr(image_processor, "crop_size", None)
    if getattr(image_processor, "do_center_crop", False) and get(crop, "height") and get(crop, "width"):
        return int(get(crop, "height")), int(get(crop, "width"))
    size = getattr(image_processor, "size", None)
    if get(size, "height") and get(size, "width"):
        return int(get(size, "height")), int(get(size, "width"))
    raise ValueError(
        f"{type(image_processor).__name__} gives no fixed image size (size={size!r}, crop={crop!r}); "
        "the number of image tokens must be fixed"
    )


class Dinov2Tower(VisionTower):
    """`Dinov2Model`, or `Dinov2WithRegistersModel` when the checkpoint/config has register tokens."""

    Options: ClassVar[type[ComponentOptions]] = Dinov2Options

    def load_model(self) -> Any:
        """The transformers model: pretrained from `source`, or randomly initialised from `config`."""
        opts: Dinov2Options = self.options  # type: ignore[assignment]
        if opts.config is not None:
            config_cls, model_cls = model_classes(has_registers(opts.config))
            return model_cls(config_cls(**{k: v for k, v in opts.config.items() if k != "model_type"}))
        from transformers import PretrainedConfig

        saved, _ = PretrainedConfig.get_config_dict(opts.source)
        model_type = saved.get("model_type")
        if model_type not in (None, "dinov2", REGISTERS_TYPE):
            raise ValueError(f"{opts.source} is a {model_type!r} checkpoint, not DINOv2")
        _, model_cls = model_classes(model_type == REGISTERS_TYPE)
        return model_cls.from_pretrained(opts.source)

    def load_processor(self) -> Any:
        opts: Dinov2Options = self.options  # type: ignore[assignment]
        if opts.source is not None:
            return processor_class().from_pretrained(opts.source)
        assert opts.config is not None
        size = int(opts.config.get("image_size", 224))
        return processor_class()(
            size={"shortest_edge": size},
            crop_size={"height": size, "width": size},
            do_center_crop=True,
            image_mean=opts.image_mean or IMAGENET_MEAN,
            image_std=opts.image_std or IMAGENET_STD,
        )

    def wrap(self, model: Any, image_processor: Any) -> Dinov2Encoder:
        """The (B, N, D) encoder for the pixels `image_processor` produces (DINOv2 interpolates positions)."""
        from tinyllava_plugin_dinov2.encoder import Dinov2Encoder

        opts: Dinov2Options = self.options  # type: ignore[assignment]
        cfg = model.config
        height, width = pixel_size(image_processor)
        return Dinov2Encoder(
            model,
            layers_path="encoder.layer",
            feature_layer=opts.feature_layer,
            strategy=opts.feature_strategy,
            num_patches=(height // cfg.patch_size) * (width // cfg.patch_size),
            num_registers=int(getattr(cfg, "num_register_tokens", 0)),
            final_norm_path="layernorm",
            apply_final_norm=opts.final_norm,
        )

    def build(self) -> VisionParts:
        model = self.load_model()  # first: it says when the source is not a DINOv2 checkpoint
        processor = self.load_processor()
        return VisionParts(self.wrap(model, processor), processor)

    def from_config(self, vision_config: dict[str, Any], image_processor: Any) -> Dinov2Encoder:
        config_cls, model_cls = model_classes(has_registers(vision_config))
        return self.wrap(model_cls(config_cls.from_dict(vision_config)), image_processor)

    def hf_llava_export(self, encoder: Any) -> Any:
        """Without register tokens the selection is CLIP's (`patch` drops the CLS token); with them, `patch` and
        `cls_patch` also drop the registers, which LLaVA's selection (drop the first token or none) cannot."""
        from tinyllava.interop.export_contract import refuse
        from tinyllava.interop.export_parts import hf_vision_part

        if encoder.num_registers and encoder.strategy != "full":
            refuse(self, f"feature_strategy {encoder.strategy!r} drops the {encoder.num_registers} register tokens; "
                         "LLaVA drops the first token or none (feature_strategy: full keeps them all)")
        return hf_vision_part(self, encoder, same_forward=True)
