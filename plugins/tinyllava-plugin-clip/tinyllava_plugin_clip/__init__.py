"""Entry module of the clip plugin: registration only, nothing heavy imported."""

from tinyllava.plugins import hookimpl


@hookimpl
def register_vision_towers() -> dict[str, str]:
    return {"clip": "tinyllava_plugin_clip.tower:CLIPTower"}
