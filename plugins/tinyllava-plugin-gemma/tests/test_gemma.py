"""The gemma plugin through the public plugin path: template golden ids/labels, Gemma 1/2/3 build and reload."""

from __future__ import annotations

import pytest

from tinyllava.constants import IMAGE_TOKEN_INDEX
from tinyllava.plugins.registry import get_registry
from tinyllava.testing.conformance import ChatTemplateConformance, LLMConformance
from tinyllava.testing.families import (
    FactoryTemplateChecks,
    check_build_save_reload,
    check_native_template,
    check_refused_before_weights,
)
from tinyllava.testing.gguf import gguf_roundtrip_test

# Golden ids for the local Gemma tokenizer below (vocab 300; `<pad>` 0, `<eos>` 1, `<bos>` 2, `<unk>` 3). The
# prefix is BOS + the system prompt + " USER: "; then the image and "\nWhat is this? ASSISTANT:" (masked),
# " A cat.<eos>" (trained), "USER: Sure? ASSISTANT:" (masked), " Yes<eos>" (trained).
PREFIX = [2, 38, 271, 275, 226, 298, 89, 92, 74, 273, 262, 271, 90, 87, 276, 270, 283, 282, 264, 262, 87, 89, 78, 75,
          78, 72, 78, 297, 226, 78, 268, 74, 81, 277, 76, 273, 299, 285, 19, 226, 293, 285, 226, 76, 78, 91, 274, 226,
          267, 81, 85, 75, 90, 81, 17, 226, 73, 74, 269, 78, 81, 74, 73, 17, 282, 226, 85, 84, 277, 89, 74, 264, 88,
          92, 266, 88, 272, 84, 272, 267, 283, 286, 226, 86, 90, 274, 89, 276, 83, 88, 19, 226, 295, 31, 226]
QUESTION1 = [IMAGE_TOKEN_INDEX, 204, 296, 226, 263, 272, 77, 263, 36, 226, 288, 292, 294, 57, 31]
ANSWER1 = [226, 38, 271, 265, 19, 1]
QUESTION2 = [295, 31, 226, 56, 90, 87, 74, 36, 226, 288, 292, 294, 57, 31]
ANSWER2 = [226, 62, 274, 1]

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 1, "head_dim": 16}
MEMBERS = [("gemma", "GemmaForCausalLM"), ("gemma2", "Gemma2ForCausalLM"), ("gemma3_text", "Gemma3ForCausalLM")]


def gemma_tokenizer():
    from tinyllava.testing.families import family_tokenizer

    return family_tokenizer("gemma", "gemma")


@pytest.fixture(scope="module")
def tokenizer():
    return gemma_tokenizer()


class TestGemmaTemplate(FactoryTemplateChecks, ChatTemplateConformance):
    name = "gemma"
    eos, eos_id, bos_id = "<eos>", 1, 2
    prefix, question1, answer1, question2, answer2 = PREFIX, QUESTION1, ANSWER1, QUESTION2, ANSWER2

    def make_tokenizer(self):
        return gemma_tokenizer()


def test_local_tokenizer_has_gemma_special_tokens_and_adds_bos(tokenizer):
    assert [tokenizer.pad_token, tokenizer.eos_token, tokenizer.bos_token, tokenizer.unk_token] == [
        "<pad>", "<eos>", "<bos>", "<unk>"]
    assert tokenizer.convert_tokens_to_ids(["<pad>", "<eos>", "<bos>", "<unk>"]) == [0, 1, 2, 3]
    assert tokenizer("A cat.")["input_ids"][0] == 2
    assert tokenizer("A cat.", add_special_tokens=False)["input_ids"][0] != 2
    llm = get_registry().create("llm", "gemma", {"config": TINY, "tokenizer_vocab_size": 300})
    assert llm.prepare_tokenizer(gemma_tokenizer()).pad_token == "<pad>"  # a real pad token is kept


@pytest.mark.parametrize(("model_type", "cls_name"), MEMBERS)
def test_each_member_builds_saves_and_reloads_by_model_type(tmp_path, model_type, cls_name):
    """Folders named like another generation (`gemma` is a substring of all): the class follows model_type."""
    import torch

    built = check_build_save_reload("gemma", {"model_type": model_type, **TINY}, cls_name, tmp_path / "gemma-2b-it",
                                    same_tokens="A cat.<eos>")
    model, ids = built.model, built.ids
    # the core splices image features through inputs_embeds: text tokens must embed (and scale) the same way
    assert torch.allclose(model(ids).logits, model(inputs_embeds=model.get_input_embeddings()(ids)).logits)


def test_multimodal_gemma3_and_other_families_are_refused_before_weights(tmp_path):
    from transformers import Gemma3Config, LlamaConfig

    check_refused_before_weights("gemma", LlamaConfig(hidden_size=32, num_hidden_layers=1), tmp_path / "gemma",
                                 "model_type 'llama'")
    check_refused_before_weights("gemma", Gemma3Config(), tmp_path / "gemma-3-4b-it",
                                 "only the text-only Gemma 3 models")


def test_local_tokenizer_works_with_the_native_template(tokenizer):
    enc = check_native_template(
        tokenizer,
        "<bos><start_of_turn>user\n<image>\nWhat is this?<end_of_turn>\n<start_of_turn>model\nA cat.<end_of_turn>\n",
        "A cat.<end_of_turn>Yes<end_of_turn>",
        [tokenizer.convert_tokens_to_ids("<end_of_turn>"), 1],
    )
    assert enc.input_ids[0] == 2 and enc.input_ids.count(2) == 1  # one BOS: the template's


test_gguf_file_loads_with_the_class_of_its_architecture = gguf_roundtrip_test("gemma", [
    ({"model_type": "gemma2", **TINY}, "gemma2", "Gemma2ForCausalLM"),
    ({"model_type": "gemma3_text", **TINY}, "gemma3", "Gemma3ForCausalLM"),
])


class TestGemmaConformance(LLMConformance):
    name = "gemma"
    options = {"config": TINY, "tokenizer_vocab_size": 300}


class TestGemma2Conformance(LLMConformance):
    name = "gemma"
    options = {"config": {"model_type": "gemma2", **TINY}, "tokenizer_vocab_size": 300}


class TestGemma3Conformance(LLMConformance):
    name = "gemma"
    options = {"config": {"model_type": "gemma3_text", **TINY}, "tokenizer_vocab_size": 300}
