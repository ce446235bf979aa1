"""Entry module of the clip plugin: registration only, nothing heavy imported."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_vision_towers() -> dict[str, str]:
    return {"clip": "tinyllava_plugin_clip.tower:CLIPTower"}
