"""The first-party plugin distributions and the components each provides (names only, nothing imported).

The core holds no component, but it knows where the project's own components come from, so that an
unknown name, a spec that needs a missing plugin, or a checkpoint saved with one, can say exactly which
distribution to install. `tests/test_plugin_catalog.py` checks this table against the in-repo plugins.
Third-party plugins are not listed; errors about them name what the installed plugins report.
"""

from __future__ import annotations

#: distribution -> (plugin id, {kind: [component names]})
FIRST_PARTY: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {
    "tinyllava-plugin-base": ("base", {"recipe": ("base",)}),
    "tinyllava-plugin-clip": ("clip", {"vision_tower": ("clip",)}),
    "tinyllava-plugin-custom-finetune": ("custom-finetune", {"recipe": ("custom_finetune",)}),
    "tinyllava-plugin-dinov2": ("dinov2", {"vision_tower": ("dinov2",)}),
    "tinyllava-plugin-gemma": ("gemma", {"chat_template": ("gemma",), "llm": ("gemma",)}),
    "tinyllava-plugin-linear": ("linear", {"connector": ("identity", "linear",)}),
    "tinyllava-plugin-llama": ("llama", {"chat_template": ("llama",), "llm": ("llama",)}),
    "tinyllava-plugin-lora": ("lora", {"recipe": ("lora",)}),
    "tinyllava-plugin-mlp": ("mlp", {"connector": ("mlp",)}),
    "tinyllava-plugin-mme": ("mme", {"benchmark": ("mme",)}),
    "tinyllava-plugin-mmmu": ("mmmu", {"benchmark": ("mmmu",)}),
    "tinyllava-plugin-mmvet": ("mmvet", {"benchmark": ("mmvet",)}),
    "tinyllava-plugin-mof": ("mof", {"connector": ("mof_mlp",), "vision_tower": ("mof",)}),
    "tinyllava-plugin-native": ("native", {"chat_template": ("native",)}),
    "tinyllava-plugin-openelm": ("openelm", {"llm": ("openelm",)}),
    "tinyllava-plugin-phi": ("phi", {"chat_template": ("phi",), "llm": ("phi",)}),
    "tinyllava-plugin-pope": ("pope", {"benchmark": ("pope",)}),
    "tinyllava-plugin-pretrain": ("pretrain", {"chat_template": ("pretrain",)}),
    "tinyllava-plugin-qformer": ("qformer", {"connector": ("qformer",)}),
    "tinyllava-plugin-qlora": ("qlora", {"recipe": ("qlora",)}),
    "tinyllava-plugin-qwen": ("qwen", {"chat_template": ("qwen2_base", "qwen2_instruct",), "llm": ("qwen",)}),
    "tinyllava-plugin-resampler": ("resampler", {"connector": ("resampler",)}),
    "tinyllava-plugin-scienceqa": ("scienceqa", {"benchmark": ("scienceqa",)}),
    "tinyllava-plugin-shapes": ("shapes", {"benchmark": ("shapes",), "dataset": ("shapes",)}),
    "tinyllava-plugin-share": ("share", {"recipe": ("share",)}),
    "tinyllava-plugin-siglip": ("siglip", {"vision_tower": ("siglip", "siglip2",)}),
    "tinyllava-plugin-stablelm": ("stablelm", {"llm": ("stablelm",)}),
    "tinyllava-plugin-tokenpool": ("tokenpool", {"connector": ("ldp", "pixel_shuffle",)}),
    "tinyllava-plugin-vqa": ("vqa", {"benchmark": ("gqa", "textvqa", "vqav2",)}),
}


def first_party_providers(kind: str, name: str) -> list[str]:
    """The first-party distributions that provide `kind` `name` (usually one)."""
    return [dist for dist, (_, provided) in FIRST_PARTY.items() if name in provided.get(kind, ())]


def first_party_plugin(distribution: str) -> str | None:
    """The plugin id of a first-party distribution, None for any other."""
    entry = FIRST_PARTY.get(distribution)
    return entry[0] if entry else None

