"""Entry module of the mlp connector plugin: registration only, nothing heavy imported."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_connectors() -> dict[str, str]:
    return {"mlp": "tinyllava_plugin_mlp.connector:MLPConnector"}
