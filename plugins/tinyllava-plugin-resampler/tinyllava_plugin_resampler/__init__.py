"""Entry module of the Perceiver resampler connector plugin: registration only, nothing heavy imported."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_connectors() -> dict[str, str]:
    return {"resampler": "tinyllava_plugin_resampler.connector:ResamplerConnector"}
