"""Entry module of the pretrain template plugin."""

from tinyllava.plugins import hookimpl


@hookimpl
def register_chat_templates() -> dict[str, str]:
    return {"pretrain": "tinyllava_plugin_pretrain.template:PretrainTemplate"}
