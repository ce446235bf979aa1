"""Entry module of the QLoRA recipe plugin."""

from tinyllava.plugins import hookimpl


@hookimpl
def register_recipes() -> dict[str, str]:
    return {"qlora": "tinyllava_plugin_qlora.recipe:QLoraRecipe"}
