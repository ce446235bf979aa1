"""Entry module of the pretrain template plugin."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_chat_templates() -> dict[str, str]:
    return {"pretrain": "tinyllava_plugin_pretrain.template:PretrainTemplate"}
