"""Contract for language-model plugins."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from tinyllava.components.base import Component

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from tinyllava.interop.export_contract import HFLlavaPart


class LLMParts(NamedTuple):
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase


class LLM(Component):
    """Builds a causal LM and its tokenizer; fixes the family's tokenizer quirks."""

    kind: ClassVar[str] = "llm"
    #: transformers config `model_type`s this plugin's `from_config` builds; importers pick the LLM plugin by them
    model_types: ClassVar[tuple[str, ...]] = ()

    # -- import contract (checkpoints from other toolkits) --------------------------------------------
    @classmethod
    def adopts(cls, model_type: str) -> bool:
        """Whether an imported checkpoint whose text config has this `model_type` can become this LLM."""
        return model_type in cls.model_types

    @classmethod
    def import_options(cls, text_config: dict[str, Any]) -> dict[str, Any]:
        """Options describing an imported LM: its architecture as `config` (the weights come with the checkpoint)."""
        skip = {"model_type", "architectures", "transformers_version", "_name_or_path", "torch_dtype", "dtype"}
        return {"config": {k: v for k, v in text_config.items() if k not in skip}}

    @classmethod
    def factory_chat_template(cls, text_config: dict[str, Any], tokenizer: Any) -> str | None:
        """The chat template TinyLLaVA Factory pairs with this LLM (its `conv_version`), None if it has none."""
        return None

    @abstractmethod
    def build(self) -> LLMParts:
        """The LM and tokenizer this component's options describe (pretrained weights or a fresh config)."""

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

    # -- export contract (transformers' LLaVA layout) -------------------------------------------------
    def hf_llava_export(self, model: PreTrainedModel) -> HFLlavaPart:
        """This LM as LlavaForConditionalGeneration's language model: its `text_config` and where each of its
        weights goes (`tinyllava.interop.export_parts.causal_lm_part` serves transformers causal LMs). Raise
        `NotExportable` with the reason when LLaVA cannot compute what it computes; the default refuses."""
        from tinyllava.interop.export_contract import not_exportable_by_default

        raise not_exportable_by_default(self)
