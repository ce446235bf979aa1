"""Entry module of the Q-Former connector plugin: registration only, nothing heavy imported."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_connectors() -> dict[str, str]:
    return {"qformer": "tinyllava_plugin_qformer.connector:QFormerConnector"}
