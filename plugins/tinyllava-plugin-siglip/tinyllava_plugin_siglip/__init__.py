"""Entry module of the siglip plugin: registration only, nothing heavy imported."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_vision_towers() -> dict[str, str]:
    return {
        "siglip": "tinyllava_plugin_siglip.tower:SiglipTower",
        "siglip2": "tinyllava_plugin_siglip.tower:Siglip2Tower",
    }
