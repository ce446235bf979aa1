"""Entry module of the LoRA recipe plugin."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_recipes() -> dict[str, str]:
    return {"lora": "tinyllava_plugin_lora.recipe:LoraRecipe"}
