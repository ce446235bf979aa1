"""The qwen plugin through the public plugin path: both templates' golden ids/labels, Qwen2 and Qwen3 build/reload."""

from __future__ import annotations

import pytest

from tinyllava.constants import IMAGE_TOKEN_INDEX
from tinyllava.plugins.registry import get_registry
from tinyllava.testing.conformance import ChatTemplateConformance, LLMConformance
from tinyllava.testing.families import (
    FACTORY_SYSTEM,
    FactoryTemplateChecks,
    check_build_save_reload,
    check_native_template,
    check_refused_before_weights,
)
from tinyllava.testing.gguf import gguf_roundtrip_test

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

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 2}
TINY3 = {"model_type": "qwen3", "head_dim": 16, **TINY}


def qwen_tokenizer(model_type: str = "qwen2"):
    from tinyllava.testing.families import family_tokenizer

    return family_tokenizer("qwen", model_type)


@pytest.fixture(scope="module")
def tokenizer():
    return qwen_tokenizer()


class TestQwen2BaseTemplate(FactoryTemplateChecks, ChatTemplateConformance):
    name = "qwen2_base"
    eos, eos_id = "<|endoftext|>", 0
    prefix, question1, question2 = PREFIX, QUESTION1, QUESTION2
    answer1, answer2 = ANSWER1_TEXT + [0], ANSWER2_TEXT + [0]

    def make_tokenizer(self):
        return qwen_tokenizer()


class TestQwen2InstructTemplate(TestQwen2BaseTemplate):
    name = "qwen2_instruct"
    eos, eos_id = "<|im_end|>", 2
    answer1, answer2 = ANSWER1_TEXT + [2], ANSWER2_TEXT + [2]


def test_tokenizer_quirks_no_unk_and_pad_is_endoftext(tokenizer):
    from tinyllava.kits.tokenizers import TokenizerSpec, build_family_tokenizer

    llm = get_registry().create("llm", "qwen", {"config": TINY, "tokenizer_vocab_size": 300})
    assert tokenizer.bos_token is None and tokenizer.unk_token is None
    base = llm.prepare_tokenizer(qwen_tokenizer())
    assert base.pad_token == base.eos_token == base.unk_token == "<|endoftext|>"  # base: pad == eos
    # an instruct-style tokenizer: eos `<|im_end|>` and no pad -> pad is `<|endoftext|>`, not eos
    spec = TokenizerSpec(special=("<|endoftext|>", "<|im_start|>", "<|im_end|>"), eos="<|im_end|>")
    instruct = llm.prepare_tokenizer(build_family_tokenizer(spec, [FACTORY_SYSTEM], 300))
    assert (instruct.pad_token, instruct.unk_token, instruct.eos_token) == ("<|endoftext|>", "<|endoftext|>",
                                                                             "<|im_end|>")
    assert instruct.pad_token_id == 0 and instruct.eos_token_id == 2


@pytest.mark.parametrize(("config", "cls_name", "misleading_folder"), [
    (TINY, "Qwen2ForCausalLM", "Qwen3-0.6B"),
    (TINY3, "Qwen3ForCausalLM", "Qwen2.5-0.5B-Instruct"),
])
def test_each_member_builds_saves_and_reloads_by_model_type(tmp_path, config, cls_name, misleading_folder):
    built = check_build_save_reload("qwen", config, cls_name, tmp_path / misleading_folder,
                                    probe="What is this?<|im_end|>", same_tokens="A cat.<|im_end|>")
    model, tok = built.model, built.tokenizer
    assert model.config.pad_token_id == model.config.eos_token_id == tok.convert_tokens_to_ids("<|endoftext|>")
    assert built.ids[0, -1] == 2


def test_qwen3_tokenizer_has_its_thinking_tokens():
    tok = qwen_tokenizer("qwen3")
    assert [len(tok(t, add_special_tokens=False)["input_ids"]) for t in ("<think>", "</think>")] == [1, 1]
    assert "<think>" not in qwen_tokenizer("qwen2").get_vocab()


def test_a_folder_of_another_family_is_refused_before_its_weights(tmp_path):
    from transformers import LlamaConfig

    check_refused_before_weights("qwen", LlamaConfig(hidden_size=32, num_hidden_layers=1), tmp_path / "qwen2-0.5b",
                                 "model_type 'llama'")
    with pytest.raises(ValueError, match="First-generation Qwen needs remote code"):
        get_registry().create("llm", "qwen", {"config": {"model_type": "qwen"}}).build()


def test_local_chatml_tokenizer_works_with_the_native_template(tokenizer):
    """The random-init tokenizer carries a ChatML template, so `native` trains answers + `<|im_end|>`."""
    check_native_template(
        tokenizer,
        "<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n<|im_start|>assistant\nA cat.<|im_end|>\n",
        "A cat.<|im_end|>Yes<|im_end|>",
        [2, 0],
    )


test_gguf_file_loads_with_the_class_of_its_architecture = gguf_roundtrip_test("qwen", [
    (TINY, "qwen2", "Qwen2ForCausalLM"),
    ({"model_type": "qwen3", **TINY}, "qwen3", "Qwen3ForCausalLM"),  # transformers reads Qwen 3 GGUF with head_dim 128
])


class TestQwen2Conformance(LLMConformance):
    name = "qwen"
    options = {"config": TINY, "tokenizer_vocab_size": 300}


class TestQwen3Conformance(LLMConformance):
    name = "qwen"
    options = {"config": TINY3, "tokenizer_vocab_size": 300}
