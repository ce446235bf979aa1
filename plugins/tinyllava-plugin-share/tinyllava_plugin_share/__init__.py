"""Entry module of the share recipe plugin."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_recipes() -> dict[str, str]:
    return {"share": "tinyllava_plugin_share.recipe:ShareRecipe"}
