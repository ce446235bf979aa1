"""TinyLLaVA Factory's `llama` template: BOS, the shared system prompt, answers end with `</s>`."""

from __future__ import annotations

from typing import Any, ClassVar

from tinyllava.templates.segmented import SegmentedTemplate

SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


class LlamaTemplate(SegmentedTemplate):
    system: ClassVar[str] = SYSTEM
    eos: ClassVar[str] = "</s>"
    add_bos: ClassVar[bool] = True

    def hf_llava_export(self, tokenizer: Any) -> str:
        """The same prompt as Jinja, for an exported processor."""
        from tinyllava.interop.export_jinja import segmented_jinja

        return segmented_jinja(self, tokenizer)
