"""The llama plugin through the public plugin path: template golden ids/labels, LLM build and reload."""

from __future__ import annotations

import pytest

from tinyllava.constants import IMAGE_TOKEN_INDEX
from tinyllava.plugins.registry import get_registry
from tinyllava.testing.conformance import ChatTemplateConformance, LLMConformance
from tinyllava.testing.families import (
    CONVERSATION,
    FACTORY_CORPUS,
    FACTORY_SYSTEM,
    FactoryTemplateChecks,
    check_options_need_exactly_one_source,
)

# Golden ids for the byte-level tokenizer below (vocab 300). The prefix is BOS + the system prompt +
# "USER: "; then the image, "\nWhat is this? ASSISTANT:" (masked), " A cat.</s>" (trained), ...
PREFIX = [1, 36, 269, 273, 224, 296, 87, 90, 72, 271, 260, 269, 88, 85, 274, 268, 281, 280, 262, 260, 85, 87, 76,
          73, 76, 298, 295, 224, 76, 266, 72, 79, 275, 74, 271, 297, 283, 17, 224, 291, 283, 224, 74, 76, 89, 272,
          224, 265, 79, 83, 73, 88, 79, 15, 224, 299, 267, 76, 79, 72, 71, 15, 280, 224, 83, 82, 275, 87, 72, 262,
          86, 90, 264, 86, 270, 82, 270, 265, 281, 284, 224, 84, 88, 272, 87, 274, 81, 86, 17, 224, 293, 29, 224]
QUESTION1 = [IMAGE_TOKEN_INDEX, 202, 294, 224, 261, 270, 75, 261, 34, 224, 286, 290, 292, 55, 29]
ANSWER1 = [224, 36, 269, 263, 17, 2]
QUESTION2 = [293, 29, 224, 54, 88, 85, 72, 34, 224, 286, 290, 292, 55, 29]
ANSWER2 = [224, 60, 272, 2]


TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 2}


def llama_tokenizer(corpus: tuple[str, ...] = FACTORY_CORPUS):
    from tinyllava.kits.tokenizers import build_byte_tokenizer

    return build_byte_tokenizer(list(corpus), 300)


@pytest.fixture(scope="module")
def tokenizer():
    return llama_tokenizer()


@pytest.fixture(scope="module")
def template():
    return get_registry().create("chat_template", "llama", {})


class TestLlamaTemplate(FactoryTemplateChecks):
    name = "llama"
    eos, eos_id, bos_id = "</s>", 2, 1
    prefix, question1, answer1, question2, answer2 = PREFIX, QUESTION1, ANSWER1, QUESTION2, ANSWER2

    def make_tokenizer(self):
        return llama_tokenizer()


def test_template_refuses_a_tokenizer_without_its_eos(template):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate("</s>abc")}, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    other = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>")
    with pytest.raises(ValueError, match="pick the template made for this LLM family"):
        template.check_tokenizer(other)


def test_conversation_errors_are_clear(template, tokenizer):
    with pytest.raises(ValueError, match="expected 'gpt'"):
        template.encode([{"from": "human", "value": "a"}, {"from": "human", "value": "b"}], tokenizer)
    with pytest.raises(ValueError, match="no answer"):
        template.encode(CONVERSATION[:1], tokenizer)


def test_llm_builds_from_config_and_reloads_from_a_local_folder(tmp_path):
    import torch

    llm = get_registry().create("llm", "llama", {
        "config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                   "num_key_value_heads": 2},
        "tokenizer_vocab_size": 300,
    })
    model, tok = llm.build()
    tok = llm.prepare_tokenizer(tok)
    assert tok.pad_token == "<pad>" and model.config.vocab_size == len(tok) == 300
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again = get_registry().create("llm", "llama", {"source": str(tmp_path)})
    model2, tok2 = again.build()
    ids = torch.tensor([tok("What is this?")["input_ids"]])
    assert torch.allclose(model(ids).logits, model2(ids).logits, atol=1e-6)
    skeleton = llm.from_config(model.config.to_dict())
    assert sum(p.numel() for p in skeleton.parameters()) == sum(p.numel() for p in model.parameters())


def test_options_need_exactly_one_source():
    check_options_need_exactly_one_source("llama")


class TestLlamaLLMConformance(LLMConformance):
    name = "llama"
    options = {"config": TINY, "tokenizer_vocab_size": 300}


class TestLlamaTemplateConformance(ChatTemplateConformance):
    name = "llama"

    def make_tokenizer(self):
        return llama_tokenizer((FACTORY_SYSTEM, "What is this?", "A cat."))


def test_image_placement_last_puts_the_question_first(tokenizer):
    template = get_registry().create("chat_template", "llama", {"image_placement": "last"})
    assert template.render(CONVERSATION[:1], add_generation_prompt=True) == (
        f"{FACTORY_SYSTEM} USER: What is this?\n<image> ASSISTANT:"
    )
    ids = template.generation_prompt([{"from": "human", "value": "<image>\nWhat is this?"}], tokenizer)
    question = tokenizer("What is this?", add_special_tokens=False)["input_ids"]
    at = ids.index(IMAGE_TOKEN_INDEX)
    assert ids[at - len(question) - 1: at - 1] == question  # question, newline, then the image
    default = get_registry().create("chat_template", "llama", {})
    prompt = default.render(CONVERSATION[:1], add_generation_prompt=True)
    assert prompt.endswith("USER: <image>\nWhat is this? ASSISTANT:")
