"""Entry module of the stablelm plugin: registration only, nothing heavy imported."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_llms() -> dict[str, str]:
    return {"stablelm": "tinyllava_plugin_stablelm.llm:StableLmLLM"}
