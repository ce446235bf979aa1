"""Entry module of the custom-finetune recipe plugin."""

from tinyllava.plugins import hookimpl


@hookimpl
def register_recipes() -> dict[str, str]:
    return {"custom_finetune": "tinyllava_plugin_custom_finetune.recipe:CustomFinetuneRecipe"}
