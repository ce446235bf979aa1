"""Entry module of the phi plugin: registration only, nothing heavy imported."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_llms() -> dict[str, str]:
    return {"phi": "tinyllava_plugin_phi.llm:PhiLLM"}


@hookimpl
def register_chat_templates() -> dict[str, str]:
    return {"phi": "tinyllava_plugin_phi.template:PhiTemplate"}
