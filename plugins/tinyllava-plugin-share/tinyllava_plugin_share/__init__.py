"""Entry module of the share recipe plugin."""

from tinyllava.plugins import hookimpl


@hookimpl
def register_recipes() -> dict[str, str]:
    return {"share": "tinyllava_plugin_share.recipe:ShareRecipe"}
