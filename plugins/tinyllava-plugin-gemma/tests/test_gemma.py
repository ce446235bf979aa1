"""The gemma plugin through the public plugin path: template golden ids/labels, Gemma 1/2/3 build and reload."""

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


def gemma_tokenizer(corpus: tuple[str, ...] = ("What is this?", "A cat.")):
    from tinyllava_plugin_native.tokenizer import build_family_tokenizer

    spec = get_registry().create("llm", "gemma", {"config": {}}).tokenizer_spec("gemma")
    return build_family_tokenizer(spec, [SYSTEM, "USER: ", " ASSISTANT: ", *corpus], 300)


@pytest.fixture(scope="module")
def tokenizer():
    return gemma_tokenizer()


@pytest.fixture(scope="module")
def template():
    return get_registry().create("chat_template", "gemma", {})


def test_render_reproduces_tinyllava_factory_strings(template):
    assert template.render(CONV) == (
        f"{SYSTEM} USER: <image>\nWhat is this? ASSISTANT: A cat.<eos>USER: Sure? ASSISTANT: Yes<eos>"
    )
    assert template.render(CONV[:1], add_generation_prompt=True) == f"{SYSTEM} USER: <image>\nWhat is this? ASSISTANT:"


def test_golden_ids_and_labels(template, tokenizer):
    assert PREFIX[0] == tokenizer.bos_token_id == 2
    assert tokenizer.decode(PREFIX[1:]) == SYSTEM + " USER: "
    assert tokenizer.decode(QUESTION1[1:]) == "\nWhat is this? ASSISTANT:"
    assert tokenizer.decode(ANSWER1) == " A cat.<eos>"
    assert tokenizer.decode(QUESTION2) == "USER: Sure? ASSISTANT:"
    assert tokenizer.decode(ANSWER2) == " Yes<eos>"
    enc = template.encode(CONV, tokenizer)
    assert enc.input_ids == PREFIX + QUESTION1 + ANSWER1 + QUESTION2 + ANSWER2
    masked = [IGNORE_INDEX] * (len(PREFIX) + len(QUESTION1))
    assert enc.labels == masked + ANSWER1 + [IGNORE_INDEX] * len(QUESTION2) + ANSWER2


def test_generation_prompt_and_stop(template, tokenizer):
    assert template.generation_prompt(CONV[:1], tokenizer) == PREFIX + QUESTION1
    assert template.stop_token_ids(tokenizer) == [tokenizer.eos_token_id] == [1]


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

    llm = get_registry().create("llm", "gemma", {"config": {"model_type": model_type, **TINY},
                                                 "tokenizer_vocab_size": 300})
    model, tok = llm.build()
    assert type(model).__name__ == cls_name and model.config.vocab_size == len(tok)
    folder = tmp_path / "gemma-2b-it"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    again, tok2 = get_registry().create("llm", "gemma", {"source": str(folder)}).build()
    assert type(again).__name__ == cls_name
    ids = torch.tensor([tok("What is this?")["input_ids"]])
    assert torch.allclose(model(ids).logits, again(ids).logits, atol=1e-6)
    assert tok2("A cat.<eos>")["input_ids"] == tok("A cat.<eos>")["input_ids"]
    # the core splices image features through inputs_embeds: text tokens must embed (and scale) the same way
    assert torch.allclose(model(ids).logits, model(inputs_embeds=model.get_input_embeddings()(ids)).logits)
    skeleton = llm.from_config(json.loads(json.dumps(model.config.to_dict())))
    assert type(skeleton).__name__ == cls_name


def test_multimodal_gemma3_and_other_families_are_refused_before_weights(tmp_path):
    from transformers import Gemma3Config, LlamaConfig

    LlamaConfig(hidden_size=32, num_hidden_layers=1).save_pretrained(tmp_path / "gemma")
    with pytest.raises(ValueError, match="model_type 'llama'"):
        get_registry().create("llm", "gemma", {"source": str(tmp_path / "gemma")}).build()
    Gemma3Config().save_pretrained(tmp_path / "gemma-3-4b-it")
    with pytest.raises(ValueError, match="only the text-only Gemma 3 models"):
        get_registry().create("llm", "gemma", {"source": str(tmp_path / "gemma-3-4b-it")}).build()


def test_local_tokenizer_works_with_the_native_template(tokenizer):
    native = get_registry().create("chat_template", "native", {})
    native.check_tokenizer(tokenizer)
    assert native.render(CONV[:2], tokenizer=tokenizer) == (
        "<bos><start_of_turn>user\n<image>\nWhat is this?<end_of_turn>\n<start_of_turn>model\nA cat.<end_of_turn>\n"
    )
    enc = native.encode(CONV, tokenizer)
    assert enc.input_ids[0] == 2 and enc.input_ids.count(2) == 1  # one BOS: the template's
    trained = [t for t, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != IGNORE_INDEX]
    assert tokenizer.decode(trained) == "A cat.<end_of_turn>Yes<end_of_turn>"
    assert native.stop_token_ids(tokenizer) == [tokenizer.convert_tokens_to_ids("<end_of_turn>"), 1]


@pytest.mark.parametrize(("config", "arch", "cls_name"), [
    ({"model_type": "gemma2", **TINY}, "gemma2", "Gemma2ForCausalLM"),
    ({"model_type": "gemma3_text", **TINY}, "gemma3", "Gemma3ForCausalLM"),
])
def test_gguf_file_loads_with_the_class_of_its_architecture(tmp_path, config, arch, cls_name):
    """A tiny model written as F32 GGUF (llama.cpp tensor names) loads back with the same logits."""
    pytest.importorskip("gguf", reason="GGUF support needs the gguf package (pip install 'tinyllava[gguf]')")
    from tinyllava_plugin_native.testing import check_gguf_roundtrip

    check_gguf_roundtrip("gemma", config, arch, cls_name, tmp_path)


class TestGemmaConformance(LLMConformance):
    name = "gemma"
    options = {"config": TINY, "tokenizer_vocab_size": 300}


class TestGemma2Conformance(LLMConformance):
    name = "gemma"
    options = {"config": {"model_type": "gemma2", **TINY}, "tokenizer_vocab_size": 300}


class TestGemma3Conformance(LLMConformance):
    name = "gemma"
    options = {"config": {"model_type": "gemma3_text", **TINY}, "tokenizer_vocab_size": 300}


class TestGemmaTemplateConformance(ChatTemplateConformance):
    name = "gemma"

    def make_tokenizer(self):
        return gemma_tokenizer()
