"""The core kits on their own: the HF family base (model_type check before any weight is read, GGUF included),
the factory templates and the local tokenizers."""

from __future__ import annotations

from typing import ClassVar

import pytest

from tinyllava.kits.factory_templates import FACTORY_SYSTEM, FactoryTemplate
from tinyllava.kits.hf_family import FamilyLLM
from tinyllava.kits.tokenizers import TokenizerSpec


class ToyLLM(FamilyLLM):
    family: ClassVar[str] = "toy"
    architectures: ClassVar[dict[str, str]] = {"qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}
    unsupported: ClassVar[dict[str, str]] = {"llama": "Llamas are not toys."}

    def tokenizer_spec(self, model_type: str) -> TokenizerSpec:
        return TokenizerSpec(special=("<|endoftext|>",), eos="<|endoftext|>")


TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 2}


def test_config_without_model_type_builds_the_first_member():
    model, tok = ToyLLM({"config": TINY, "tokenizer_vocab_size": 300}).build()
    assert type(model).__name__ == "Qwen2ForCausalLM" and model.config.eos_token_id == tok.eos_token_id == 0
    model, _ = ToyLLM({"config": {"model_type": "qwen3", "head_dim": 16, **TINY}}).build()
    assert type(model).__name__ == "Qwen3ForCausalLM"


def test_unknown_model_types_are_refused_with_the_members_and_the_hint():
    with pytest.raises(ValueError, match=r"qwen2 \(Qwen2ForCausalLM\), qwen3 \(Qwen3ForCausalLM\).*'llama'.*not toys"):
        ToyLLM({"config": {"model_type": "llama"}}).build()
    with pytest.raises(ValueError, match="'mistral'. Pick the LLM plugin of that family"):
        ToyLLM({"config": {"model_type": "mistral"}}).build()
    with pytest.raises(ValueError, match="vocab_size 100 is smaller than the local tokenizer"):
        ToyLLM({"config": {**TINY, "vocab_size": 100}}).build()


def test_a_gguf_of_another_architecture_is_refused_before_its_tensors(tmp_path, monkeypatch):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2ForCausalLM

    from tinyllava.testing.gguf import write_tiny_gguf

    llama = LlamaForCausalLM(LlamaConfig(vocab_size=300, **TINY))
    write_tiny_gguf(llama, "llama", tmp_path / "qwen2.gguf")

    def no_weights(*args: object, **kwargs: object) -> None:
        raise AssertionError("weights were loaded before the model_type check")

    monkeypatch.setattr(Qwen2ForCausalLM, "from_pretrained", no_weights)
    with pytest.raises(ValueError, match="'llama'"):
        ToyLLM({"source": str(tmp_path), "gguf_file": "qwen2.gguf"}).build()


def test_dtype_and_attention_options_reach_the_model():
    import torch

    model, _ = ToyLLM({"config": TINY, "dtype": "bfloat16", "attn_implementation": "eager"}).build()
    assert model.dtype == torch.bfloat16 and model.config._attn_implementation == "eager"
    skeleton = ToyLLM({"config": TINY, "dtype": "bfloat16"}).from_config(model.config.to_dict())
    assert skeleton.dtype == torch.bfloat16


def test_factory_template_carries_the_shared_system_prompt():
    assert FactoryTemplate.system == FACTORY_SYSTEM
    assert FACTORY_SYSTEM.startswith("A chat between a curious user and an artificial intelligence assistant. ")


def test_byte_tokenizer_is_llama_style_and_deterministic():
    from tinyllava.kits.tokenizers import build_byte_tokenizer

    tok = build_byte_tokenizer(["hello world", FACTORY_SYSTEM], 300)
    again = build_byte_tokenizer(["hello world", FACTORY_SYSTEM], 300)
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (0, 1, 2, 3)
    assert tok("hello world")["input_ids"] == again("hello world")["input_ids"]
    assert tok.decode(tok("hello world")["input_ids"]) == "hello world"
