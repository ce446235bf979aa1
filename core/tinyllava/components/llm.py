"""Contract for language-model plugins."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from tinyllava.components.base import Component

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class LLMParts(NamedTuple):
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase


class LLM(Component):
    """Builds a causal LM and its tokenizer; fixes the family's tokenizer quirks."""

    kind: ClassVar[str] = "llm"

    def build(self) -> LLMParts:
        """The LM and tokenizer this component's options describe (pretrained weights or a fresh config)."""
        raise NotImplementedError

    def from_config(self, text_config: dict[str, Any]) -> PreTrainedModel:
        """An uninitialised LM with this architecture, used when loading a tinyllava checkpoint."""
        from transformers import AutoConfig, AutoModelForCausalLM

        config_dict = dict(text_config)
        model_type = config_dict.pop("model_type")
        config = AutoConfig.for_model(model_type, **config_dict)
        return AutoModelForCausalLM.from_config(config)

    def prepare_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
        """Give the tokenizer a pad token distinct from nothing: unk, else eos."""
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
        return tokenizer
