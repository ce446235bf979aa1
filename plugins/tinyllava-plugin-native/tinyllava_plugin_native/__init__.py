"""Entry module of the native plugin: registration only, nothing heavy imported."""

from tinyllava.plugins import hookimpl


@hookimpl
def register_chat_templates() -> dict[str, str]:
    return {"native": "tinyllava_plugin_native.template:NativeTemplate"}
