"""Entry module of the Q-Former connector plugin: registration only, nothing heavy imported."""

from tinyllava.plugins import hookimpl


@hookimpl
def register_connectors() -> dict[str, str]:
    return {"qformer": "tinyllava_plugin_qformer.connector:QFormerConnector"}
