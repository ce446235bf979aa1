"""Entry module of the mlp connector plugin: registration only, nothing heavy imported."""

from tinyllava.plugins import hookimpl


@hookimpl
def register_connectors() -> dict[str, str]:
    return {"mlp": "tinyllava_plugin_mlp.connector:MLPConnector"}
