"""Entry module of the LoRA recipe plugin."""

from tinyllava.plugins import hookimpl


@hookimpl
def register_recipes() -> dict[str, str]:
    return {"lora": "tinyllava_plugin_lora.recipe:LoraRecipe"}
