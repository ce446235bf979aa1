"""Entry module of the base recipe plugin."""

from tinyllava.plugins import hookimpl


@hookimpl
def register_recipes() -> dict[str, str]:
    return {"base": "tinyllava_plugin_base.recipe:BaseRecipe"}
