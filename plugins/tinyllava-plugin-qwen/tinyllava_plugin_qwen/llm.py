"""Qwen LLMs: Qwen 1.5 / 2 / 2.5 (`qwen2`, Qwen2ForCausalLM) and Qwen 3 (`qwen3`, Qwen3ForCausalLM), by model_type."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from tinyllava.kits.hf_family import FamilyLLM
from tinyllava.kits.tokenizers import TokenizerSpec

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerBase

ENDOFTEXT = "<|endoftext|>"
# ChatML, written for the local test tokenizer: `<|im_start|>{role}\n{content}<|im_end|>\n` per turn.
CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class QwenLLM(FamilyLLM):
    """Tokenizer quirk: Qwen has no unk and no bos; pad = `<|endoftext|>` (the original then sets unk = pad).

    For base checkpoints `<|endoftext|>` is also eos, so pad == eos; the collator masks by length, so
    the trained eos stays attended.
    """

    family: ClassVar[str] = "qwen"
    architectures: ClassVar[dict[str, str]] = {"qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}
    unsupported: ClassVar[dict[str, str]] = {
        "qwen": "First-generation Qwen needs remote code; use Qwen 1.5 or later (model_type qwen2).",
        "qwen2_moe": "Qwen MoE models are not covered by this plugin.",
        "qwen3_moe": "Qwen MoE models are not covered by this plugin.",
        "qwen2_vl": "Qwen2-VL is a multimodal model, not a text LLM.",
        "qwen2_5_vl": "Qwen2.5-VL is a multimodal model, not a text LLM.",
    }

    @classmethod
    def factory_chat_template(cls, text_config: dict[str, Any], tokenizer: Any) -> str | None:
        """TinyLLaVA Factory trains Qwen2 base models with `qwen2_base` and instruct models (eos `<|im_end|>`) with
        `qwen2_instruct`; the tokenizer's eos tells them apart."""
        eos = getattr(tokenizer, "eos_token", None)
        return "qwen2_instruct" if eos == "<|im_end|>" else "qwen2_base"

    def tokenizer_spec(self, model_type: str) -> TokenizerSpec:
        """As the base checkpoints ship: eos = pad = `<|endoftext|>`, ChatML turn tokens, no bos, no unk."""
        return TokenizerSpec(
            special=(ENDOFTEXT, "<|im_start|>", "<|im_end|>"),
            eos=ENDOFTEXT, pad=ENDOFTEXT, chat_template=CHATML,
            added=("<think>", "</think>") if model_type == "qwen3" else (),
        )

    def prepare_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
        if tokenizer.pad_token is None:
            has_endoftext = ENDOFTEXT in tokenizer.get_vocab()
            tokenizer.pad_token = ENDOFTEXT if has_endoftext else tokenizer.eos_token
        if tokenizer.unk_token is None:
            tokenizer.unk_token = tokenizer.pad_token
        return tokenizer
