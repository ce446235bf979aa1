"""Entry module of the openelm plugin: registration only, nothing heavy imported."""

from tinyllava.plugins import hookimpl


@hookimpl
def register_llms() -> dict[str, str]:
    return {"openelm": "tinyllava_plugin_openelm.llm:OpenELMLLM"}
