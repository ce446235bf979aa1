"""The `openelm` LLM: Apple's OpenELM from a local folder / hub id (with a separate tokenizer) or a fresh config.

OpenELM checkpoints ship no tokenizer: they were trained with Llama 2's (TinyLLaVA Factory passes
`meta-llama/Llama-2-7b-hf`, which is gated), so `tokenizer` is required next to `source`. Tokenizer quirk:
Llama 2's tokenizer has no pad token; pad = unk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from tinyllava.components.base import ComponentOptions
from tinyllava.components.llm import LLM, LLMParts

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

NO_TOKENIZER = (
    "OpenELM checkpoints ship no tokenizer: give `tokenizer` too, a folder or hub id of the Llama 2 tokenizer "
    "OpenELM was trained with (TinyLLaVA Factory uses meta-llama/Llama-2-7b-hf, which is gated; any copy of that "
    "32000-token SentencePiece tokenizer works)"
)


class OpenELMOptions(ComponentOptions):
    source: str | None = Field(None, description="hub id or local folder with an OpenELM config.json + weights")
    tokenizer: str | None = Field(
        None,
        description="tokenizer folder or hub id; required with `source` (OpenELM ships none: use Llama 2's). "
        "With `config`: use this tokenizer instead of training a local one",
    )
    config: dict[str, Any] | None = Field(
        None, description="OpenELMConfig fields (model_dim, head_dim, qkv_multipliers, ...) for a random init"
    )
    tokenizer_vocab_size: int = Field(
        512, ge=300, description="with `config`: size of the byte-level BPE tokenizer trained locally"
    )
    tokenizer_corpus: list[str] = Field(
        default_factory=list, description="with `config`: extra text the local tokenizer learns merges from"
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="weights dtype")
    attn_implementation: str | None = Field("sdpa", description="eager, sdpa, flash_attention_2, flex_attention")

    @model_validator(mode="after")
    def _one_source(self) -> OpenELMOptions:
        if (self.source is None) == (self.config is None):
            raise ValueError("give exactly one of `source` (pretrained) or `config` (random init)")
        if self.source is not None and not self.tokenizer:
            raise ValueError(NO_TOKENIZER)
        return self


class OpenELMLLM(LLM):
    """OpenELM 270M / 450M / 1.1B / 3B (and -Instruct), implemented in this plugin; pairs with the `llama` template."""

    Options: ClassVar[type[ComponentOptions]] = OpenELMOptions
    model_types: ClassVar[tuple[str, ...]] = ("openelm",)

    @classmethod
    def factory_chat_template(cls, text_config: dict[str, Any], tokenizer: Any) -> str | None:
        """TinyLLaVA Factory trains OpenELM (with Llama 2's tokenizer) with its `llama` template."""
        return "llama"

    def hf_llava_export(self, model: Any) -> Any:
        from tinyllava.interop.export_contract import refuse

        refuse(self, 'OpenELM is not a transformers architecture (it needs remote code), so plain transformers'
                     ' cannot build it inside LlavaForConditionalGeneration')

    def _dtype(self) -> Any:
        import torch

        return getattr(torch, self.options.dtype)  # type: ignore[attr-defined]

    def _attn(self, config: Any) -> Any:
        if self.options.attn_implementation:  # type: ignore[attr-defined]
            config._attn_implementation = self.options.attn_implementation  # type: ignore[attr-defined]
        return config

    def build(self) -> LLMParts:
        opts: OpenELMOptions = self.options  # type: ignore[assignment]
        if opts.config is not None:
            return self._build_random(opts)
        return self._build_pretrained(opts)

    def _build_random(self, opts: OpenELMOptions) -> LLMParts:
        from tinyllava_plugin_openelm.modeling_openelm import OpenELMConfig, OpenELMForCausalLM

        if opts.tokenizer:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(opts.tokenizer, trust_remote_code=False)
        else:
            from tinyllava.kits.factory_templates import FACTORY_PROMPT_CORPUS
            from tinyllava.kits.tokenizers import build_byte_tokenizer

            corpus = [*FACTORY_PROMPT_CORPUS, *opts.tokenizer_corpus]
            tokenizer = build_byte_tokenizer(corpus, opts.tokenizer_vocab_size)
            tokenizer.pad_token = tokenizer.unk_token  # as OpenELM is used: Llama 2's tokenizer, pad = unk
        fields = dict(opts.config or {})
        fields.pop("model_type", None)
        ids = {
            "vocab_size": len(tokenizer),
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        }
        config = self._attn(OpenELMConfig(**{**ids, **fields}))
        return LLMParts(OpenELMForCausalLM(config).to(self._dtype()), tokenizer)

    def _build_pretrained(self, opts: OpenELMOptions) -> LLMParts:
        from transformers import AutoTokenizer, PretrainedConfig

        from tinyllava_plugin_openelm.modeling_openelm import OpenELMForCausalLM

        config_dict, _ = PretrainedConfig.get_config_dict(opts.source)
        model_type = config_dict.get("model_type")
        if model_type != "openelm":
            raise ValueError(
                f"llm 'openelm' loads model_type 'openelm'; {opts.source!r} has model_type {model_type!r}. "
                "Pick the LLM plugin of that family (see `tinyllava components --kind llm`)."
            )
        kwargs: dict[str, Any] = {"dtype": self._dtype()}
        if opts.attn_implementation:
            kwargs["attn_implementation"] = opts.attn_implementation
        model = OpenELMForCausalLM.from_pretrained(opts.source, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(opts.tokenizer, trust_remote_code=False)
        return LLMParts(model, tokenizer)

    def from_config(self, text_config: dict[str, Any]) -> PreTrainedModel:
        from tinyllava_plugin_openelm.modeling_openelm import OpenELMConfig, OpenELMForCausalLM

        fields = dict(text_config)
        model_type = fields.pop("model_type", "openelm")
        if model_type != "openelm":
            raise ValueError(f"llm 'openelm' cannot rebuild a model_type {model_type!r} text config")
        config = self._attn(OpenELMConfig(**fields))
        return OpenELMForCausalLM(config).to(self._dtype())

    def prepare_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
        """Llama 2's tokenizer has no pad token: pad = unk (as TinyLLaVA Factory does for OpenELM), else eos."""
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
        return tokenizer
