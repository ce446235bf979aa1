"""Entry module of the custom-finetune recipe plugin."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_recipes() -> dict[str, str]:
    return {"custom_finetune": "tinyllava_plugin_custom_finetune.recipe:CustomFinetuneRecipe"}
