"""The phi plugin through the public plugin path: template golden ids/labels, Phi-2 and Phi-3 build and reload."""

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
# Golden ids for the local Phi-2 tokenizer below (vocab 300, `<|endoftext|>` = 0). No BOS: the prefix is
# the system prompt + " USER: "; then the image, "\nWhat is this? ASSISTANT:" (masked), " A cat.<|endoftext|>"
# (trained), "USER: Sure? ASSISTANT:" (masked), " Yes<|endoftext|>" (trained).
PREFIX = [33, 266, 270, 221, 293, 84, 87, 299, 257, 266, 85, 82, 271, 265, 278, 277, 259, 257, 82, 84, 73, 70, 73,
          295, 292, 221, 73, 263, 298, 272, 71, 268, 294, 280, 14, 221, 288, 280, 221, 71, 73, 86, 269, 221, 262, 76,
          80, 70, 85, 76, 12, 221, 296, 264, 73, 76, 297, 12, 277, 221, 80, 79, 272, 84, 69, 259, 83, 87, 261, 83,
          267, 79, 267, 262, 278, 281, 221, 81, 85, 269, 84, 271, 78, 83, 14, 221, 290, 26, 221]
QUESTION1 = [IMAGE_TOKEN_INDEX, 199, 291, 221, 258, 267, 72, 258, 31, 221, 283, 287, 289, 52, 26]
ANSWER1 = [221, 33, 266, 260, 14, 0]
QUESTION2 = [290, 26, 221, 51, 85, 82, 69, 31, 221, 283, 287, 289, 52, 26]
ANSWER2 = [221, 57, 269, 0]

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 2}


def phi_tokenizer(model_type: str = "phi", corpus: tuple[str, ...] = ("What is this?", "A cat.")):
    from tinyllava_plugin_native.tokenizer import build_family_tokenizer

    spec = get_registry().create("llm", "phi", {"config": {}}).tokenizer_spec(model_type)
    return build_family_tokenizer(spec, [SYSTEM, "USER: ", " ASSISTANT: ", *corpus], 300)


@pytest.fixture(scope="module")
def tokenizer():
    return phi_tokenizer()


@pytest.fixture(scope="module")
def template():
    return get_registry().create("chat_template", "phi", {})


def test_render_reproduces_tinyllava_factory_strings(template):
    assert template.render(CONV) == (
        f"{SYSTEM} USER: <image>\nWhat is this? ASSISTANT: A cat.<|endoftext|>USER: Sure? ASSISTANT: Yes<|endoftext|>"
    )
    assert template.render(CONV[:1], add_generation_prompt=True) == f"{SYSTEM} USER: <image>\nWhat is this? ASSISTANT:"


def test_golden_ids_and_labels(template, tokenizer):
    assert tokenizer.decode(PREFIX) == SYSTEM + " USER: "
    assert tokenizer.decode(QUESTION1[1:]) == "\nWhat is this? ASSISTANT:"
    assert tokenizer.decode(ANSWER1) == " A cat.<|endoftext|>"
    assert tokenizer.decode(QUESTION2) == "USER: Sure? ASSISTANT:"
    assert tokenizer.decode(ANSWER2) == " Yes<|endoftext|>"
    enc = template.encode(CONV, tokenizer)
    assert enc.input_ids == PREFIX + QUESTION1 + ANSWER1 + QUESTION2 + ANSWER2
    masked = [IGNORE_INDEX] * (len(PREFIX) + len(QUESTION1))
    assert enc.labels == masked + ANSWER1 + [IGNORE_INDEX] * len(QUESTION2) + ANSWER2


def test_generation_prompt_and_stop(template, tokenizer):
    assert template.generation_prompt(CONV[:1], tokenizer) == PREFIX + QUESTION1
    assert template.stop_token_ids(tokenizer) == [tokenizer.eos_token_id] == [0]


def test_template_refuses_a_tokenizer_without_endoftext(template):
    from tinyllava_plugin_llama.tokenizer import build_byte_tokenizer

    with pytest.raises(ValueError, match="pick the template made for this LLM family"):
        template.check_tokenizer(build_byte_tokenizer([SYSTEM], 300))


def test_pad_equal_to_eos_keeps_the_trained_eos_attended(template):
    """Phi-2's quirk: pad = unk = eos. The collator must not mistake the answer's eos for padding."""
    import torch

    from tinyllava.data.dataset import Collator

    llm = get_registry().create("llm", "phi", {"config": TINY, "tokenizer_vocab_size": 300})
    tok = llm.prepare_tokenizer(phi_tokenizer())
    assert tok.pad_token == tok.unk_token == tok.eos_token == tok.bos_token == "<|endoftext|>"
    long, short = template.encode(CONV, tok), template.encode(CONV[:2], tok)
    batch = Collator(tok.pad_token_id)([
        {"input_ids": torch.tensor(long.input_ids), "labels": torch.tensor(long.labels)},
        {"input_ids": torch.tensor(short.input_ids), "labels": torch.tensor(short.labels)},
    ])
    n = len(short.input_ids)
    assert batch["input_ids"][1, n - 1] == tok.eos_token_id == batch["input_ids"][1, n]  # eos, then a pad
    assert batch["attention_mask"][1].tolist() == [1] * n + [0] * (len(long.input_ids) - n)
    assert batch["labels"][1, n - 1] == tok.eos_token_id and batch["labels"][1, n] == IGNORE_INDEX


@pytest.mark.parametrize(("model_type", "cls_name"), [("phi", "PhiForCausalLM"), ("phi3", "Phi3ForCausalLM")])
def test_each_member_builds_saves_and_reloads_by_model_type(tmp_path, model_type, cls_name):
    """The folder is named after the *other* member: the class must follow config.model_type, not the path."""
    import torch

    llm = get_registry().create("llm", "phi", {"config": {"model_type": model_type, **TINY},
                                               "tokenizer_vocab_size": 300})
    model, tok = llm.build()
    assert type(model).__name__ == cls_name and model.config.model_type == model_type
    assert model.config.vocab_size == len(tok) and "<|endoftext|>" in tok.get_vocab()
    folder = tmp_path / ("phi-3-mini" if model_type == "phi" else "phi-2")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    again, tok2 = get_registry().create("llm", "phi", {"source": str(folder)}).build()
    assert type(again).__name__ == cls_name
    ids = torch.tensor([tok("What is this?")["input_ids"]])
    assert torch.allclose(model(ids).logits, again(ids).logits, atol=1e-6)
    assert tok2("A cat.<|endoftext|>")["input_ids"] == tok("A cat.<|endoftext|>")["input_ids"]
    skeleton = llm.from_config(json.loads(json.dumps(model.config.to_dict())))
    assert type(skeleton).__name__ == cls_name


def test_tokenizer_quirks_per_member():
    llm = get_registry().create("llm", "phi", {"config": TINY, "tokenizer_vocab_size": 300})
    phi2 = phi_tokenizer("phi")
    assert phi2.pad_token is None  # as Phi-2 ships: the quirk is fixed by prepare_tokenizer
    assert llm.prepare_tokenizer(phi2).pad_token_id == phi2.eos_token_id == phi2.unk_token_id
    phi3 = llm.prepare_tokenizer(phi_tokenizer("phi3"))
    assert (phi3.bos_token, phi3.eos_token, phi3.unk_token, phi3.pad_token) == ("<s>", "<|endoftext|>", "<unk>",
                                                                               "<|endoftext|>")
    assert all(len(phi3(t, add_special_tokens=False)["input_ids"]) == 1 for t in ("<|user|>", "<|end|>"))


def test_a_folder_of_another_family_is_refused_before_its_weights(tmp_path):
    """Only config.json exists: the error must come from the model_type check, not from missing weights."""
    from transformers import LlamaConfig

    LlamaConfig(hidden_size=32, num_hidden_layers=1).save_pretrained(tmp_path / "phi-2")
    with pytest.raises(ValueError, match="model_type 'llama'"):
        get_registry().create("llm", "phi", {"source": str(tmp_path / "phi-2")}).build()
    with pytest.raises(ValueError, match="phi \\(PhiForCausalLM\\), phi3 \\(Phi3ForCausalLM\\)"):
        get_registry().create("llm", "phi", {"config": {"model_type": "llama"}}).build()


def test_options_need_exactly_one_source():
    from pydantic import ValidationError

    cls = get_registry().component_class("llm", "phi")
    with pytest.raises(ValidationError, match="exactly one of"):
        cls.Options.model_validate({})
    with pytest.raises(ValidationError, match="gguf_file"):
        cls.Options.model_validate({"config": {}, "gguf_file": "x.gguf"})


@pytest.mark.parametrize(("config", "arch", "cls_name"), [({"model_type": "phi3", **TINY}, "phi3", "Phi3ForCausalLM")])
def test_gguf_file_loads_with_the_class_of_its_architecture(tmp_path, config, arch, cls_name):
    """A tiny model written as F32 GGUF (llama.cpp tensor names) loads back with the same logits."""
    pytest.importorskip("gguf", reason="GGUF support needs the gguf package (pip install 'tinyllava[gguf]')")
    from tinyllava_plugin_native.testing import check_gguf_roundtrip

    check_gguf_roundtrip("phi", config, arch, cls_name, tmp_path)


class TestPhi2Conformance(LLMConformance):
    name = "phi"
    options = {"config": TINY, "tokenizer_vocab_size": 300}


class TestPhi3Conformance(LLMConformance):
    name = "phi"
    options = {"config": {"model_type": "phi3", **TINY}, "tokenizer_vocab_size": 300}


class TestPhiTemplateConformance(ChatTemplateConformance):
    name = "phi"

    def make_tokenizer(self):
        return phi_tokenizer()
