"""Entry module of the native plugin: registration only, nothing heavy imported."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_chat_templates() -> dict[str, str]:
    return {"native": "tinyllava_plugin_native.template:NativeTemplate"}
