"""The phi plugin through the public plugin path: template golden ids/labels, Phi-2 and Phi-3 build and reload."""

from __future__ import annotations

import pytest

from tinyllava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from tinyllava.plugins.registry import get_registry
from tinyllava.testing.conformance import ChatTemplateConformance, LLMConformance
from tinyllava.testing.families import (
    CONVERSATION,
    FACTORY_SYSTEM,
    FactoryTemplateChecks,
    check_build_save_reload,
    check_options_need_exactly_one_source,
    check_refused_before_weights,
)
from tinyllava.testing.gguf import gguf_roundtrip_test

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


def phi_tokenizer(model_type: str = "phi"):
    from tinyllava.testing.families import family_tokenizer

    return family_tokenizer("phi", model_type)


@pytest.fixture(scope="module")
def template():
    return get_registry().create("chat_template", "phi", {})


class TestPhiTemplate(FactoryTemplateChecks, ChatTemplateConformance):
    name = "phi"
    eos, eos_id = "<|endoftext|>", 0
    prefix, question1, answer1, question2, answer2 = PREFIX, QUESTION1, ANSWER1, QUESTION2, ANSWER2

    def make_tokenizer(self):
        return phi_tokenizer()


def test_template_refuses_a_tokenizer_without_endoftext(template):
    from tinyllava.kits.tokenizers import build_byte_tokenizer

    with pytest.raises(ValueError, match="pick the template made for this LLM family"):
        template.check_tokenizer(build_byte_tokenizer([FACTORY_SYSTEM], 300))


def test_pad_equal_to_eos_keeps_the_trained_eos_attended(template):
    """Phi-2's quirk: pad = unk = eos. The collator must not mistake the answer's eos for padding."""
    import torch

    from tinyllava.data.dataset import Collator

    llm = get_registry().create("llm", "phi", {"config": TINY, "tokenizer_vocab_size": 300})
    tok = llm.prepare_tokenizer(phi_tokenizer())
    assert tok.pad_token == tok.unk_token == tok.eos_token == tok.bos_token == "<|endoftext|>"
    long, short = template.encode(CONVERSATION, tok), template.encode(CONVERSATION[:2], tok)
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
    folder = tmp_path / ("phi-3-mini" if model_type == "phi" else "phi-2")
    built = check_build_save_reload("phi", {"model_type": model_type, **TINY}, cls_name, folder,
                                    same_tokens="A cat.<|endoftext|>")
    assert built.model.config.model_type == model_type and "<|endoftext|>" in built.tokenizer.get_vocab()


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
    from transformers import LlamaConfig

    check_refused_before_weights("phi", LlamaConfig(hidden_size=32, num_hidden_layers=1), tmp_path / "phi-2",
                                 "model_type 'llama'")
    with pytest.raises(ValueError, match="phi \\(PhiForCausalLM\\), phi3 \\(Phi3ForCausalLM\\)"):
        get_registry().create("llm", "phi", {"config": {"model_type": "llama"}}).build()


def test_options_need_exactly_one_source():
    check_options_need_exactly_one_source("phi")


test_gguf_file_loads_with_the_class_of_its_architecture = gguf_roundtrip_test("phi", [
    ({"model_type": "phi3", **TINY}, "phi3", "Phi3ForCausalLM"),
])


class TestPhi2Conformance(LLMConformance):
    name = "phi"
    options = {"config": TINY, "tokenizer_vocab_size": 300}


class TestPhi3Conformance(LLMConformance):
    name = "phi"
    options = {"config": {"model_type": "phi3", **TINY}, "tokenizer_vocab_size": 300}
