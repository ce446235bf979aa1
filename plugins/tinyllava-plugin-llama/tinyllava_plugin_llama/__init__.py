"""Entry module of the llama plugin: registration only, nothing heavy imported."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_llms() -> dict[str, str]:
    return {"llama": "tinyllava_plugin_llama.llm:LlamaLLM"}


@hookimpl
def register_chat_templates() -> dict[str, str]:
    return {"llama": "tinyllava_plugin_llama.template:LlamaTemplate"}
