"""The stablelm plugin through the public plugin path: build and reload, and its pairing with the `phi` template."""

from __future__ import annotations

import json

import pytest

from tinyllava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from tinyllava.plugins.registry import get_registry
from tinyllava.testing.conformance import LLMConformance

SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
CONV = [
    {"from": "human", "value": "What is this?\n<image>"},
    {"from": "gpt", "value": "A cat."},
    {"from": "human", "value": "Sure?"},
    {"from": "gpt", "value": "Yes"},
]
# Golden ids of the `phi` template with the local StableLM tokenizer below (vocab 300, `<|endoftext|>` = 0). No
# BOS: the prefix is the system prompt + " USER: "; then the image and "\nWhat is this? ASSISTANT:" (masked),
# " A cat.<|endoftext|>" (trained), "USER: Sure? ASSISTANT:" (masked), " Yes<|endoftext|>" (trained).
PREFIX = [35, 268, 272, 223, 295, 86, 89, 71, 270, 259, 268, 87, 84, 273, 267, 280, 279, 261, 259, 84, 86, 75, 72, 75,
          297, 294, 223, 75, 265, 71, 78, 274, 73, 270, 296, 282, 16, 223, 290, 282, 223, 73, 75, 88, 271, 223, 264,
          78, 82, 72, 87, 78, 14, 223, 298, 266, 75, 78, 299, 14, 279, 223, 82, 81, 274, 86, 71, 261, 85, 89, 263, 85,
          269, 81, 269, 264, 280, 283, 223, 83, 87, 271, 86, 273, 80, 85, 16, 223, 292, 28, 223]
QUESTION1 = [IMAGE_TOKEN_INDEX, 201, 293, 223, 260, 269, 74, 260, 33, 223, 285, 289, 291, 54, 28]
ANSWER1 = [223, 35, 268, 262, 16, 0]
QUESTION2 = [292, 28, 223, 53, 87, 84, 71, 33, 223, 285, 289, 291, 54, 28]
ANSWER2 = [223, 59, 271, 0]
TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 2}


def stablelm_tokenizer():
    from tinyllava_plugin_native.tokenizer import build_family_tokenizer

    spec = get_registry().create("llm", "stablelm", {"config": {}}).tokenizer_spec("stablelm")
    return build_family_tokenizer(spec, [SYSTEM, "USER: ", " ASSISTANT: ", "What is this?", "A cat."], 300)


def test_tokenizer_is_stablelm2_shaped_and_pad_equals_eos():
    llm = get_registry().create("llm", "stablelm", {"config": TINY, "tokenizer_vocab_size": 300})
    tok = llm.prepare_tokenizer(stablelm_tokenizer())
    assert tok.bos_token == tok.eos_token == tok.pad_token == "<|endoftext|>" and tok.unk_token is None
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]


def test_phi_template_golden_ids_and_labels():
    """The pairing the original uses: answers end with `<|endoftext|>` (id 0 here), which is trained."""
    template, tok = get_registry().create("chat_template", "phi", {}), stablelm_tokenizer()
    template.check_tokenizer(tok)
    assert tok.decode(PREFIX) == SYSTEM + " USER: "
    assert tok.decode(QUESTION1[1:]) == "\nWhat is this? ASSISTANT:"
    assert tok.decode(ANSWER1) == " A cat.<|endoftext|>"
    assert tok.decode(QUESTION2) == "USER: Sure? ASSISTANT:"
    assert tok.decode(ANSWER2) == " Yes<|endoftext|>"
    enc = template.encode(CONV, tok)
    assert enc.input_ids == PREFIX + QUESTION1 + ANSWER1 + QUESTION2 + ANSWER2
    masked = [IGNORE_INDEX] * (len(PREFIX) + len(QUESTION1))
    assert enc.labels == masked + ANSWER1 + [IGNORE_INDEX] * len(QUESTION2) + ANSWER2
    assert template.generation_prompt(CONV[:1], tok) == PREFIX + QUESTION1
    assert template.stop_token_ids(tok) == [0]


def test_builds_saves_and_reloads_by_model_type(tmp_path):
    import torch

    llm = get_registry().create("llm", "stablelm", {"config": TINY, "tokenizer_vocab_size": 300})
    model, tok = llm.build()
    assert type(model).__name__ == "StableLmForCausalLM" and model.config.vocab_size == len(tok)
    folder = tmp_path / "phi-2"  # the original's substring match would have picked Phi here
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    again, tok2 = get_registry().create("llm", "stablelm", {"source": str(folder)}).build()
    assert type(again).__name__ == "StableLmForCausalLM"
    ids = torch.tensor([tok("What is this?")["input_ids"]])
    assert torch.allclose(model(ids).logits, again(ids).logits, atol=1e-6)
    assert tok2.pad_token == tok2.eos_token == "<|endoftext|>"
    skeleton = llm.from_config(json.loads(json.dumps(model.config.to_dict())))
    assert type(skeleton).__name__ == "StableLmForCausalLM"


def test_a_phi_folder_is_refused_before_its_weights(tmp_path):
    from transformers import PhiConfig

    PhiConfig(hidden_size=32, num_hidden_layers=1).save_pretrained(tmp_path / "stablelm-2-1_6b")
    with pytest.raises(ValueError, match="model_type 'phi'"):
        get_registry().create("llm", "stablelm", {"source": str(tmp_path / "stablelm-2-1_6b")}).build()


@pytest.mark.parametrize(("config", "arch", "cls_name"), [(TINY, "stablelm", "StableLmForCausalLM")])
def test_gguf_file_loads_with_the_class_of_its_architecture(tmp_path, config, arch, cls_name):
    """A tiny model written as F32 GGUF (llama.cpp tensor names) loads back with the same logits."""
    pytest.importorskip("gguf", reason="GGUF support needs the gguf package (pip install 'tinyllava[gguf]')")
    from tinyllava_plugin_native.testing import check_gguf_roundtrip

    check_gguf_roundtrip("stablelm", config, arch, cls_name, tmp_path)


class TestStableLmConformance(LLMConformance):
    name = "stablelm"
    options = {"config": TINY, "tokenizer_vocab_size": 300}
