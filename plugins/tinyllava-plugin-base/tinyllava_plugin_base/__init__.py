"""Entry module of the base recipe plugin."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_recipes() -> dict[str, str]:
    return {"base": "tinyllava_plugin_base.recipe:BaseRecipe"}
