"""The stablelm plugin through the public plugin path: build and reload, and its pairing with the `phi` template."""

from __future__ import annotations

from tinyllava.constants import IMAGE_TOKEN_INDEX
from tinyllava.plugins.registry import get_registry
from tinyllava.testing.conformance import LLMConformance
from tinyllava.testing.families import FactoryTemplateChecks, check_build_save_reload, check_refused_before_weights
from tinyllava.testing.gguf import gguf_roundtrip_test

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
    from tinyllava.testing.families import family_tokenizer

    return family_tokenizer("stablelm", "stablelm")


def test_tokenizer_is_stablelm2_shaped_and_pad_equals_eos():
    llm = get_registry().create("llm", "stablelm", {"config": TINY, "tokenizer_vocab_size": 300})
    tok = llm.prepare_tokenizer(stablelm_tokenizer())
    assert tok.bos_token == tok.eos_token == tok.pad_token == "<|endoftext|>" and tok.unk_token is None
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]


class TestPhiTemplateWithStableLmTokenizer(FactoryTemplateChecks):
    """The pairing the original uses: answers end with `<|endoftext|>` (id 0 here), which is trained."""

    name = "phi"
    eos, eos_id = "<|endoftext|>", 0
    prefix, question1, answer1, question2, answer2 = PREFIX, QUESTION1, ANSWER1, QUESTION2, ANSWER2

    def make_tokenizer(self):
        return stablelm_tokenizer()


def test_builds_saves_and_reloads_by_model_type(tmp_path):
    # the original's substring match would have picked Phi for this folder
    built = check_build_save_reload("stablelm", TINY, "StableLmForCausalLM", tmp_path / "phi-2")
    assert built.reloaded_tokenizer.pad_token == built.reloaded_tokenizer.eos_token == "<|endoftext|>"


def test_a_phi_folder_is_refused_before_its_weights(tmp_path):
    from transformers import PhiConfig

    check_refused_before_weights("stablelm", PhiConfig(hidden_size=32, num_hidden_layers=1),
                                 tmp_path / "stablelm-2-1_6b", "model_type 'phi'")


test_gguf_file_loads_with_the_class_of_its_architecture = gguf_roundtrip_test("stablelm", [
    (TINY, "stablelm", "StableLmForCausalLM"),
])


class TestStableLmConformance(LLMConformance):
    name = "stablelm"
    options = {"config": TINY, "tokenizer_vocab_size": 300}
