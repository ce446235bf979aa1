"""Entry module of the gemma plugin: registration only, nothing heavy imported."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_llms() -> dict[str, str]:
    return {"gemma": "tinyllava_plugin_gemma.llm:GemmaLLM"}


@hookimpl
def register_chat_templates() -> dict[str, str]:
    return {"gemma": "tinyllava_plugin_gemma.template:GemmaTemplate"}
