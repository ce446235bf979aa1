"""Entry module of the openelm plugin: registration only, nothing heavy imported."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_llms() -> dict[str, str]:
    return {"openelm": "tinyllava_plugin_openelm.llm:OpenELMLLM"}
