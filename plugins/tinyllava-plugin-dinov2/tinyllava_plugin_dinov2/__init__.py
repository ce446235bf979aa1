"""Entry module of the dinov2 plugin: registration only, nothing heavy imported."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_vision_towers() -> dict[str, str]:
    return {"dinov2": "tinyllava_plugin_dinov2.tower:Dinov2Tower"}
