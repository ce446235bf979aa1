"""Entry module of the token-pooling connector plugin: registration only, nothing heavy imported."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_connectors() -> dict[str, str]:
    return {
        "pixel_shuffle": "tinyllava_plugin_tokenpool.connector:PixelShuffleConnector",
        "ldp": "tinyllava_plugin_tokenpool.connector:LDPConnector",
    }
