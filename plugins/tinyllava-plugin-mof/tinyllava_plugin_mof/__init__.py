"""Entry module of the mof plugin: registration only, nothing heavy imported."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_vision_towers() -> dict[str, str]:
    return {"mof": "tinyllava_plugin_mof.tower:MoFTower"}


@hookimpl
def register_connectors() -> dict[str, str]:
    return {"mof_mlp": "tinyllava_plugin_mof.connector:MoFMLPConnector"}
