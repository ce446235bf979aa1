"""Entry module of the QLoRA recipe plugin."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_recipes() -> dict[str, str]:
    return {"qlora": "tinyllava_plugin_qlora.recipe:QLoraRecipe"}
