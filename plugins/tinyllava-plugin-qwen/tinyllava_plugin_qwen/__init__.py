"""Entry module of the qwen plugin: registration only, nothing heavy imported."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_llms() -> dict[str, str]:
    return {"qwen": "tinyllava_plugin_qwen.llm:QwenLLM"}


@hookimpl
def register_chat_templates() -> dict[str, str]:
    return {
        "qwen2_base": "tinyllava_plugin_qwen.template:Qwen2BaseTemplate",
        "qwen2_instruct": "tinyllava_plugin_qwen.template:Qwen2InstructTemplate",
    }
