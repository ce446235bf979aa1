"""Entry module of the stablelm plugin: registration only, nothing heavy imported."""

from tinyllava.plugins import hookimpl


@hookimpl
def register_llms() -> dict[str, str]:
    return {"stablelm": "tinyllava_plugin_stablelm.llm:StableLmLLM"}
