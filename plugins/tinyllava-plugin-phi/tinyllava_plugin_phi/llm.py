"""Phi LLMs: Phi-2 (`phi`, PhiForCausalLM) and Phi-3 / 3.5 / 4-mini (`phi3`, Phi3ForCausalLM), by model_type."""

from __future__ import annotations

from typing import Any, ClassVar

from tinyllava.kits.hf_family import FamilyLLM
from tinyllava.kits.tokenizers import TokenizerSpec

# Written for the local test tokenizer (not Microsoft's text): `<|role|>\n{content}<|end|>\n` per turn.
PHI3_CHAT = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '<|end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


class PhiLLM(FamilyLLM):
    """Tokenizer quirk (as the original): Phi-2 has no pad, so pad = unk = `<|endoftext|>` = eos.

    pad == eos is harmless here: the collator builds attention masks from lengths, so a trained
    `<|endoftext|>` stays attended and keeps its label.
    """

    family: ClassVar[str] = "phi"
    architectures: ClassVar[dict[str, str]] = {"phi": "PhiForCausalLM", "phi3": "Phi3ForCausalLM"}
    unsupported: ClassVar[dict[str, str]] = {
        "phimoe": "Phi-3.5-MoE is not covered by this plugin.",
        "phi4_multimodal": "Phi-4-multimodal is a multimodal model, not a text LLM.",
    }

    @classmethod
    def factory_chat_template(cls, text_config: dict[str, Any], tokenizer: Any) -> str | None:
        """TinyLLaVA Factory trains Phi with its `phi` template."""
        return "phi"

    def tokenizer_spec(self, model_type: str) -> TokenizerSpec:
        if model_type == "phi3":  # a Llama-style vocabulary plus Phi-3's chat tokens
            return TokenizerSpec(
                special=("<unk>", "<s>", "</s>", "<|endoftext|>", "<|assistant|>", "<|end|>", "<|system|>",
                         "<|user|>"),
                bos="<s>", eos="<|endoftext|>", unk="<unk>", pad="<|endoftext|>", chat_template=PHI3_CHAT,
                add_bos=True,
            )
        # Phi-2 (CodeGen vocabulary): one special token plays bos, eos and unk; there is no pad
        return TokenizerSpec(special=("<|endoftext|>",), bos="<|endoftext|>", eos="<|endoftext|>",
                             unk="<|endoftext|>")
