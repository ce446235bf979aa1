"""An LLM family that transformers supports natively (phi, stablelm, qwen, gemma plugins build on it).

A family maps each config `model_type` it covers to one transformers class. The member is chosen from the
loaded (or declared) config, never from a hub id or a folder name, so `/home/phil/qwen` is not Phi and a
Gemma 2 checkpoint never gets Gemma 1's class. Options mirror the llama plugin's, so specs read the same.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from tinyllava.components.base import ComponentOptions
from tinyllava.components.llm import LLM, LLMParts
from tinyllava.kits.factory_templates import FACTORY_PROMPT_CORPUS
from tinyllava.kits.tokenizers import TokenizerSpec, build_family_tokenizer

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase


class FamilyOptions(ComponentOptions):
    source: str | None = Field(None, description="hub id or local folder with config + weights")
    gguf_file: str | None = Field(None, description="GGUF file name inside `source` (a local folder)")
    tokenizer: str | None = Field(None, description="tokenizer folder or hub id (default: source)")
    config: dict[str, Any] | None = Field(
        None,
        description="config fields for a randomly initialised model; `model_type` picks the family member "
        "(default: the family's first)",
    )
    tokenizer_vocab_size: int = Field(
        512, ge=300, description="with `config`: size of the byte-level BPE tokenizer trained locally"
    )
    tokenizer_corpus: list[str] = Field(
        default_factory=list, description="with `config`: extra text the local tokenizer learns merges from"
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="weights dtype")
    attn_implementation: str | None = Field(
        None, description="eager, sdpa, flash_attention_2 ...; None: transformers' choice (sdpa where the "
        "architecture supports it, else eager: Gemma 2 has no sdpa)"
    )

    @model_validator(mode="after")
    def _one_source(self) -> FamilyOptions:
        if (self.source is None) == (self.config is None):
            raise ValueError("give exactly one of `source` (pretrained) or `config` (random init)")
        if self.gguf_file and not self.source:
            raise ValueError("`gguf_file` needs `source`, the folder that holds it")
        return self


class FamilyLLM(LLM):
    """Base of a family plugin's LLM: subclasses set the class attributes and `tokenizer_spec`."""

    Options: ClassVar[type[ComponentOptions]] = FamilyOptions
    family: ClassVar[str] = ""
    #: config model_type -> transformers class name; the first entry is the default for `config` builds
    architectures: ClassVar[dict[str, str]] = {}
    #: model_types users may try that this family cannot load, with the reason and the fix
    unsupported: ClassVar[dict[str, str]] = {}

    # -- family description -------------------------------------------------------------------
    @abstractmethod
    def tokenizer_spec(self, model_type: str) -> TokenizerSpec:
        """Special tokens of the tokenizer trained locally for a random-init `model_type` model."""

    def model_class(self, model_type: str) -> type[PreTrainedModel]:
        """The transformers class for `model_type`, or a ValueError that names what this family covers."""
        import transformers

        if model_type in self.architectures:
            return getattr(transformers, self.architectures[model_type])
        known = ", ".join(f"{mt} ({cls})" for mt, cls in self.architectures.items())
        hint = self.unsupported.get(model_type, "")
        raise ValueError(
            f"llm {self.name or self.family!r} loads model_type {known}; this config has model_type "
            f"{model_type!r}. {hint or 'Pick the LLM plugin of that family (see `tinyllava components --kind llm`).'}"
        )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A family adopts exactly the model_types it has a class for."""
        super().__init_subclass__(**kwargs)
        cls.model_types = tuple(cls.architectures)

    @classmethod
    def import_options(cls, text_config: dict[str, Any]) -> dict[str, Any]:
        """The architecture as `config`, `model_type` included: it picks the family member."""
        options = super().import_options(text_config)
        options["config"] = {"model_type": text_config["model_type"], **options["config"]}
        return options

    @property
    def default_model_type(self) -> str:
        return next(iter(self.architectures))

    # -- the contract -------------------------------------------------------------------------
    def _dtype(self) -> Any:
        import torch

        return getattr(torch, self.options.dtype)  # type: ignore[attr-defined]

    def _attn(self, config: PretrainedConfig) -> PretrainedConfig:
        if self.options.attn_implementation:  # type: ignore[attr-defined]
            config._attn_implementation = self.options.attn_implementation  # type: ignore[attr-defined]
        return config

    def build(self) -> LLMParts:
        opts: FamilyOptions = self.options  # type: ignore[assignment]
        if opts.config is not None:
            return self._build_random(opts)
        return self._build_pretrained(opts)

    def _build_random(self, opts: FamilyOptions) -> LLMParts:
        from transformers import AutoConfig

        fields = dict(opts.config or {})
        model_type = str(fields.pop("model_type", self.default_model_type))
        cls = self.model_class(model_type)
        corpus = [*FACTORY_PROMPT_CORPUS, *opts.tokenizer_corpus]
        tokenizer = build_family_tokenizer(self.tokenizer_spec(model_type), corpus, opts.tokenizer_vocab_size)
        ids = {
            "vocab_size": len(tokenizer),
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        }
        config = self._attn(AutoConfig.for_model(model_type, **{**ids, **fields}))
        if config.vocab_size < len(tokenizer):
            raise ValueError(f"config vocab_size {config.vocab_size} is smaller than the local tokenizer "
                             f"({len(tokenizer)} tokens); leave vocab_size out, it is set from the tokenizer")
        return LLMParts(cls(config).to(self._dtype()), tokenizer)

    def _build_pretrained(self, opts: FamilyOptions) -> LLMParts:
        from transformers import AutoConfig, AutoTokenizer

        gguf = {"gguf_file": opts.gguf_file} if opts.gguf_file else {}
        config = AutoConfig.from_pretrained(opts.source, trust_remote_code=False, **gguf)
        cls = self.model_class(config.model_type)  # before the weights: fail fast on the wrong family
        kwargs: dict[str, Any] = {"dtype": self._dtype(), **gguf}
        if opts.attn_implementation:
            kwargs["attn_implementation"] = opts.attn_implementation
        model = cls.from_pretrained(opts.source, config=config, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(opts.tokenizer or opts.source, trust_remote_code=False,
                                                  **({} if opts.tokenizer else gguf))
        return LLMParts(model, tokenizer)

    def from_config(self, text_config: dict[str, Any]) -> PreTrainedModel:
        from transformers import AutoConfig

        fields = dict(text_config)
        model_type = str(fields.pop("model_type"))
        cls = self.model_class(model_type)
        config = self._attn(AutoConfig.for_model(model_type, **fields))
        return cls(config).to(self._dtype())

    def prepare_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
        """No pad token: use unk, else eos (pad == eos is safe: the collator masks by length, not by id)."""
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
        return tokenizer

    def hf_llava_export(self, model: Any) -> Any:
        """Every family member is a transformers causal LM; members whose head LLaVA cannot reproduce (a biased
        lm_head as in Phi-2, Gemma 2's logit soft-cap) are refused by `causal_lm_part` with the reason."""
        from tinyllava.interop.export_parts import causal_lm_part

        return causal_lm_part(self, model)
