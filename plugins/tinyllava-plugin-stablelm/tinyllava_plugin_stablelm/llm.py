"""StableLM LLMs (`stablelm`, StableLmForCausalLM): StableLM-2 1.6B / zephyr / chat and StableLM-3B-4E1T."""

from __future__ import annotations

from typing import Any, ClassVar

from tinyllava.kits.hf_family import FamilyLLM
from tinyllava.kits.tokenizers import TokenizerSpec


class StableLmLLM(FamilyLLM):
    """StableLM-2's tokenizer uses `<|endoftext|>` as bos, eos and pad (pad == eos, safe: masks come from lengths).

    The `phi` template fits it unchanged (answers end with `<|endoftext|>`), which is what the original uses.
    """

    family: ClassVar[str] = "stablelm"
    architectures: ClassVar[dict[str, str]] = {"stablelm": "StableLmForCausalLM"}
    unsupported: ClassVar[dict[str, str]] = {
        "stablelm_epoch": "This checkpoint needs remote code (the pre-transformers StableLM format); use a "
        "revision with model_type stablelm.",
    }

    @classmethod
    def factory_chat_template(cls, text_config: dict[str, Any], tokenizer: Any) -> str | None:
        """TinyLLaVA Factory trains StableLM-2 with its `phi` template (answers end with `<|endoftext|>`)."""
        return "phi"

    def tokenizer_spec(self, model_type: str) -> TokenizerSpec:
        """As StableLM-2 ships: `<|endoftext|>` plays bos, eos and pad; ChatML turn tokens; no unk."""
        return TokenizerSpec(
            special=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
            bos="<|endoftext|>", eos="<|endoftext|>", pad="<|endoftext|>",
        )
