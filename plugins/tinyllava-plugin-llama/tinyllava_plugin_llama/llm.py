"""Llama-architecture LLMs: from a hub id or local folder, from a GGUF file, or a fresh config (tests)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from tinyllava.components.base import ComponentOptions
from tinyllava.components.llm import LLM, LLMParts


class LlamaOptions(ComponentOptions):
    source: str | None = Field(None, description="hub id or local folder with config + safetensors")
    gguf_file: str | None = Field(None, description="GGUF file name inside `source` (a local folder)")
    tokenizer: str | None = Field(None, description="tokenizer folder or hub id (default: source)")
    config: dict[str, Any] | None = Field(None, description="LlamaConfig fields for a randomly initialised model")
    tokenizer_vocab_size: int = Field(
        512, ge=300, description="with `config`: size of the byte-level BPE tokenizer trained locally"
    )
    tokenizer_corpus: list[str] = Field(
        default_factory=list, description="with `config`: extra text the local tokenizer learns merges from"
    )
    dtype: str = Field("float32", description="float32, bfloat16 or float16")
    attn_implementation: str | None = Field("sdpa", description="eager, sdpa, flash_attention_2 ...")

    @model_validator(mode="after")
    def _one_source(self) -> LlamaOptions:
        if (self.source is None) == (self.config is None):
            raise ValueError("give exactly one of `source` (pretrained) or `config` (random init)")
        if self.gguf_file and not self.source:
            raise ValueError("`gguf_file` needs `source`, the folder that holds it")
        return self


class LlamaLLM(LLM):
    Options: ClassVar[type[ComponentOptions]] = LlamaOptions
    model_types: ClassVar[tuple[str, ...]] = ("llama",)

    @classmethod
    def factory_chat_template(cls, text_config: dict[str, Any], tokenizer: Any) -> str | None:
        """TinyLLaVA Factory trains TinyLlama (and OpenELM) with its `llama` template."""
        return "llama"

    def _dtype(self) -> Any:
        import torch

        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[self.options.dtype]

    def build(self) -> LLMParts:
        from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

        opts: LlamaOptions = self.options  # type: ignore[assignment]
        if opts.config is not None:
            from tinyllava.kits.factory_templates import FACTORY_PROMPT_CORPUS
            from tinyllava.kits.tokenizers import build_byte_tokenizer

            corpus = [*FACTORY_PROMPT_CORPUS, *opts.tokenizer_corpus]
            tokenizer = build_byte_tokenizer(corpus, opts.tokenizer_vocab_size)
            config = LlamaConfig(
                **{
                    "vocab_size": len(tokenizer),
                    "bos_token_id": tokenizer.bos_token_id,
                    "eos_token_id": tokenizer.eos_token_id,
                    "pad_token_id": tokenizer.pad_token_id,
                    **opts.config,
                }
            )
            if opts.attn_implementation:
                config._attn_implementation = opts.attn_implementation
            model = LlamaForCausalLM(config).to(self._dtype())
            return LLMParts(model, tokenizer)
        kwargs: dict[str, Any] = {"dtype": self._dtype()}
        if opts.attn_implementation:
            kwargs["attn_implementation"] = opts.attn_implementation
        if opts.gguf_file:
            kwargs["gguf_file"] = opts.gguf_file
        model = AutoModelForCausalLM.from_pretrained(opts.source, trust_remote_code=False, **kwargs)
        tok_kwargs = {"gguf_file": opts.gguf_file} if opts.gguf_file and not opts.tokenizer else {}
        tokenizer = AutoTokenizer.from_pretrained(opts.tokenizer or opts.source, trust_remote_code=False, **tok_kwargs)
        return LLMParts(model, tokenizer)

    def from_config(self, text_config: dict[str, Any]) -> Any:
        from transformers import AutoConfig, AutoModelForCausalLM

        config_dict = dict(text_config)
        config = AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
        if self.options.attn_implementation:
            config._attn_implementation = self.options.attn_implementation
        return AutoModelForCausalLM.from_config(config).to(self._dtype())

    def prepare_tokenizer(self, tokenizer: Any) -> Any:
        """Llama tokenizers often lack a pad token: use unk (TinyLlama), else eos (Llama 3, SmolLM2)."""
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
        return tokenizer

    def hf_llava_export(self, model: Any) -> Any:
        """A LlamaForCausalLM is LLaVA's own language model: weights and config as they are."""
        from tinyllava.interop.export_parts import causal_lm_part

        return causal_lm_part(self, model)

