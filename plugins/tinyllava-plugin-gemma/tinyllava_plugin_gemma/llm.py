"""Gemma LLMs: Gemma 1 (`gemma`), Gemma 2 (`gemma2`) and text-only Gemma 3 (`gemma3_text`), by model_type."""

from __future__ import annotations

from typing import Any, ClassVar

from tinyllava.kits.hf_family import FamilyLLM
from tinyllava.kits.tokenizers import TokenizerSpec

# Gemma's turn format, written for the local test tokenizer: bos, then `<start_of_turn>{role}\n{content}<end_of_turn>\n`
# per turn, where the assistant's role is called `model`.
GEMMA_CHAT = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else m['role']) + '\n' + m['content'] "
    "+ '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


class GemmaLLM(FamilyLLM):
    """Gemma tokenizers ship `<pad>`, `<eos>`, `<bos>` and `<unk>`, so the pad quirk rarely applies.

    A tokenizer without pad gets pad = unk. Each generation has its own class: the original built
    Gemma 2 checkpoints with Gemma 1's class because `gemma` is a substring of `gemma-2`.
    """

    family: ClassVar[str] = "gemma"
    architectures: ClassVar[dict[str, str]] = {
        "gemma": "GemmaForCausalLM",
        "gemma2": "Gemma2ForCausalLM",
        "gemma3_text": "Gemma3ForCausalLM",
    }
    unsupported: ClassVar[dict[str, str]] = {
        "gemma3": "This is a multimodal Gemma 3 config (4B and larger); only the text-only Gemma 3 models "
        "(model_type gemma3_text: gemma-3-270m, gemma-3-1b) are covered.",
        "gemma3n": "Gemma 3n is not covered by this plugin.",
        "paligemma": "PaliGemma is a multimodal model, not a text LLM.",
    }

    @classmethod
    def factory_chat_template(cls, text_config: dict[str, Any], tokenizer: Any) -> str | None:
        """TinyLLaVA Factory trains Gemma with its `gemma` template."""
        return "gemma"

    def tokenizer_spec(self, model_type: str) -> TokenizerSpec:
        """The same special tokens for every generation, in Gemma's id order (pad 0, eos 1, bos 2, unk 3)."""
        return TokenizerSpec(
            special=("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"),
            bos="<bos>", eos="<eos>", unk="<unk>", pad="<pad>", chat_template=GEMMA_CHAT, add_bos=True,
        )
