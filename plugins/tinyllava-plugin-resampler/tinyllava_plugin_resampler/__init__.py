"""Entry module of the Perceiver resampler connector plugin: registration only, nothing heavy imported."""

from tinyllava.plugins import hookimpl


@hookimpl
def register_connectors() -> dict[str, str]:
    return {"resampler": "tinyllava_plugin_resampler.connector:ResamplerConnector"}
