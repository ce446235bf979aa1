"""The qwen plugin through the public plugin path: both templates' golden ids/labels, Qwen2 and Qwen3 build/reload."""

from __future__ import annotations

import json

import pytest

from tinyllava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from tinyllava.plugins.registry import get_registry
from tinyllava.testing.conformance import ChatTemplateConformance, LLMConformance

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
# Golden ids for the local Qwen tokenizer below (vocab 300; `<|endoftext|>` = 0, `<|im_start|>` = 1,
# `<|im_end|>` = 2). No BOS: the prefix is the system prompt + " USER: "; then the image and
# "\nWhat is this? ASSISTANT:" (masked), " A cat." + eos (trained), "USER: Sure? ASSISTANT:" (masked), " Yes" + eos.
PREFIX = [35, 268, 272, 223, 295, 86, 89, 71, 270, 259, 268, 87, 84, 273, 267, 280, 279, 261, 259, 84, 86, 75, 72, 75,
          297, 294, 223, 75, 265, 71, 78, 274, 73, 270, 296, 282, 16, 223, 290, 282, 223, 73, 75, 88, 271, 223, 264,
          78, 82, 72, 87, 78, 14, 223, 298, 266, 75, 78, 299, 14, 279, 223, 82, 81, 274, 86, 71, 261, 85, 89, 263, 85,
          269, 81, 269, 264, 280, 283, 223, 83, 87, 271, 86, 273, 80, 85, 16, 223, 292, 28, 223]
QUESTION1 = [IMAGE_TOKEN_INDEX, 201, 293, 223, 260, 269, 74, 260, 33, 223, 285, 289, 291, 54, 28]
ANSWER1_TEXT = [223, 35, 268, 262, 16]  # " A cat."
QUESTION2 = [292, 28, 223, 53, 87, 84, 71, 33, 223, 285, 289, 291, 54, 28]
ANSWER2_TEXT = [223, 59, 271]  # " Yes"
EOS = {"qwen2_base": ("<|endoftext|>", 0), "qwen2_instruct": ("<|im_end|>", 2)}

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 2}
TINY3 = {"model_type": "qwen3", "head_dim": 16, **TINY}


def qwen_tokenizer(model_type: str = "qwen2", corpus: tuple[str, ...] = ("What is this?", "A cat.")):
    from tinyllava_plugin_native.tokenizer import build_family_tokenizer

    spec = get_registry().create("llm", "qwen", {"config": {}}).tokenizer_spec(model_type)
    return build_family_tokenizer(spec, [SYSTEM, "USER: ", " ASSISTANT: ", *corpus], 300)


@pytest.fixture(scope="module")
def tokenizer():
    return qwen_tokenizer()


@pytest.mark.parametrize("name", ["qwen2_base", "qwen2_instruct"])
def test_render_reproduces_tinyllava_factory_strings(name):
    template, eos = get_registry().create("chat_template", name, {}), EOS[name][0]
    assert template.render(CONV) == (
        f"{SYSTEM} USER: <image>\nWhat is this? ASSISTANT: A cat.{eos}USER: Sure? ASSISTANT: Yes{eos}"
    )
    assert template.render(CONV[:1], add_generation_prompt=True) == f"{SYSTEM} USER: <image>\nWhat is this? ASSISTANT:"


@pytest.mark.parametrize("name", ["qwen2_base", "qwen2_instruct"])
def test_golden_ids_labels_prompt_and_stop(name, tokenizer):
    template, (eos, eos_id) = get_registry().create("chat_template", name, {}), EOS[name]
    assert tokenizer.decode(PREFIX) == SYSTEM + " USER: "
    assert tokenizer.decode(QUESTION1[1:]) == "\nWhat is this? ASSISTANT:"
    assert tokenizer.decode(QUESTION2) == "USER: Sure? ASSISTANT:"
    answer1, answer2 = ANSWER1_TEXT + [eos_id], ANSWER2_TEXT + [eos_id]
    assert tokenizer.decode(answer1) == f" A cat.{eos}" and tokenizer.decode(answer2) == f" Yes{eos}"
    enc = template.encode(CONV, tokenizer)
    assert enc.input_ids == PREFIX + QUESTION1 + answer1 + QUESTION2 + answer2
    masked = [IGNORE_INDEX] * (len(PREFIX) + len(QUESTION1))
    assert enc.labels == masked + answer1 + [IGNORE_INDEX] * len(QUESTION2) + answer2
    assert template.generation_prompt(CONV[:1], tokenizer) == PREFIX + QUESTION1
    assert template.stop_token_ids(tokenizer) == [eos_id]


def test_tokenizer_quirks_no_unk_and_pad_is_endoftext(tokenizer):
    from tinyllava_plugin_native.tokenizer import TokenizerSpec, build_family_tokenizer

    llm = get_registry().create("llm", "qwen", {"config": TINY, "tokenizer_vocab_size": 300})
    assert tokenizer.bos_token is None and tokenizer.unk_token is None
    base = llm.prepare_tokenizer(qwen_tokenizer())
    assert base.pad_token == base.eos_token == base.unk_token == "<|endoftext|>"  # base: pad == eos
    # an instruct-style tokenizer: eos `<|im_end|>` and no pad -> pad is `<|endoftext|>`, not eos
    spec = TokenizerSpec(special=("<|endoftext|>", "<|im_start|>", "<|im_end|>"), eos="<|im_end|>")
    instruct = llm.prepare_tokenizer(build_family_tokenizer(spec, [SYSTEM], 300))
    assert (instruct.pad_token, instruct.unk_token, instruct.eos_token) == ("<|endoftext|>", "<|endoftext|>",
                                                                             "<|im_end|>")
    assert instruct.pad_token_id == 0 and instruct.eos_token_id == 2


@pytest.mark.parametrize(("config", "cls_name", "misleading_folder"), [
    (TINY, "Qwen2ForCausalLM", "Qwen3-0.6B"),
    (TINY3, "Qwen3ForCausalLM", "Qwen2.5-0.5B-Instruct"),
])
def test_each_member_builds_saves_and_reloads_by_model_type(tmp_path, config, cls_name, misleading_folder):
    import torch

    llm = get_registry().create("llm", "qwen", {"config": config, "tokenizer_vocab_size": 300})
    model, tok = llm.build()
    assert type(model).__name__ == cls_name and model.config.vocab_size == len(tok)
    assert model.config.pad_token_id == model.config.eos_token_id == tok.convert_tokens_to_ids("<|endoftext|>")
    folder = tmp_path / misleading_folder
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    again, tok2 = get_registry().create("llm", "qwen", {"source": str(folder)}).build()
    assert type(again).__name__ == cls_name
    ids = torch.tensor([tok("What is this?<|im_end|>")["input_ids"]])
    assert ids[0, -1] == 2
    assert torch.allclose(model(ids).logits, again(ids).logits, atol=1e-6)
    assert tok2("A cat.<|im_end|>")["input_ids"] == tok("A cat.<|im_end|>")["input_ids"]
    skeleton = llm.from_config(json.loads(json.dumps(model.config.to_dict())))
    assert type(skeleton).__name__ == cls_name


def test_qwen3_tokenizer_has_its_thinking_tokens():
    tok = qwen_tokenizer("qwen3")
    assert [len(tok(t, add_special_tokens=False)["input_ids"]) for t in ("<think>", "</think>")] == [1, 1]
    assert "<think>" not in qwen_tokenizer("qwen2").get_vocab()


def test_a_folder_of_another_family_is_refused_before_its_weights(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(hidden_size=32, num_hidden_layers=1).save_pretrained(tmp_path / "qwen2-0.5b")
    with pytest.raises(ValueError, match="model_type 'llama'"):
        get_registry().create("llm", "qwen", {"source": str(tmp_path / "qwen2-0.5b")}).build()
    with pytest.raises(ValueError, match="First-generation Qwen needs remote code"):
        get_registry().create("llm", "qwen", {"config": {"model_type": "qwen"}}).build()


def test_local_chatml_tokenizer_works_with_the_native_template(tokenizer):
    """The random-init tokenizer carries a ChatML template, so `native` trains answers + `<|im_end|>`."""
    native = get_registry().create("chat_template", "native", {})
    native.check_tokenizer(tokenizer)
    assert native.render(CONV[:2], tokenizer=tokenizer) == (
        "<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n<|im_start|>assistant\nA cat.<|im_end|>\n"
    )
    enc = native.encode(CONV, tokenizer)
    trained = [t for t, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != IGNORE_INDEX]
    assert tokenizer.decode(trained) == "A cat.<|im_end|>Yes<|im_end|>"
    assert native.stop_token_ids(tokenizer) == [2, 0]


@pytest.mark.parametrize(("config", "arch", "cls_name"), [
    (TINY, "qwen2", "Qwen2ForCausalLM"),
    ({"model_type": "qwen3", **TINY}, "qwen3", "Qwen3ForCausalLM"),  # transformers reads Qwen 3 GGUF with head_dim 128
])
def test_gguf_file_loads_with_the_class_of_its_architecture(tmp_path, config, arch, cls_name):
    """A tiny model written as F32 GGUF (llama.cpp tensor names) loads back with the same logits."""
    pytest.importorskip("gguf", reason="GGUF support needs the gguf package (pip install 'tinyllava[gguf]')")
    from tinyllava_plugin_native.testing import check_gguf_roundtrip

    check_gguf_roundtrip("qwen", config, arch, cls_name, tmp_path)


class TestQwen2Conformance(LLMConformance):
    name = "qwen"
    options = {"config": TINY, "tokenizer_vocab_size": 300}


class TestQwen3Conformance(LLMConformance):
    name = "qwen"
    options = {"config": TINY3, "tokenizer_vocab_size": 300}


class TestQwen2BaseTemplateConformance(ChatTemplateConformance):
    name = "qwen2_base"

    def make_tokenizer(self):
        return qwen_tokenizer()


class TestQwen2InstructTemplateConformance(ChatTemplateConformance):
    name = "qwen2_instruct"

    def make_tokenizer(self):
        return qwen_tokenizer()
