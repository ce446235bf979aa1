"""TinyLLaVA Factory templates (llama, phi, gemma, qwen2_base, qwen2_instruct) on each family's byte-level BPE
tokenizer: properties that must hold for any conversation, not just the golden ones.

- ids: `encode(conversation)` equals `tokenizer(render(conversation))` (the image placeholder aside);
- labels: exactly the answers' tokens and each answer's end-of-turn token, nothing of the prompt;
- data is text: a literal `</s>`, `<|im_end|>` or `<|endoftext|>` in an answer is tokenised as text, so it can
  neither end the turn early nor be trained as an end-of-turn token;
- a non-string answer is an error, never the text "None".
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyllava.constants import IGNORE_INDEX, IMAGE_PLACEHOLDER, IMAGE_TOKEN_INDEX
from tinyllava.plugins.registry import get_registry
from tinyllava.testing.families import FACTORY_CORPUS, family_tokenizer

# template -> (llm plugin, model_type) whose tokenizer it is made for
PAIRS = {
    "llama": ("llama", "llama"),
    "phi": ("phi", "phi"),
    "gemma": ("gemma", "gemma"),
    "qwen2_base": ("qwen", "qwen2"),
    "qwen2_instruct": ("qwen", "qwen2"),
}
_TOKENIZERS: dict[tuple[str, str], object] = {}


def tokenizer_for(template: str):
    key = PAIRS[template]
    if key not in _TOKENIZERS:
        if key[0] == "llama":  # the llama plugin has one member, its spec lives in the kit
            from tinyllava.kits.tokenizers import LLAMA_SPEC, build_family_tokenizer

            _TOKENIZERS[key] = build_family_tokenizer(LLAMA_SPEC, list(FACTORY_CORPUS), 300)
        else:
            _TOKENIZERS[key] = family_tokenizer(*key)
    return _TOKENIZERS[key]


def template(name: str):
    return get_registry().create("chat_template", name, {})


def plain_ids(tpl, tok, conversation) -> list[int]:
    """What the tokenizer makes of the rendered text (bos as the template adds it, the image left out)."""
    text = tpl.render(conversation).replace(IMAGE_PLACEHOLDER, "")
    bos = tpl._bos(tok)
    return bos + tok(text, add_special_tokens=False)["input_ids"]


def trained_ids(enc) -> list[int]:
    return [t for t, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != IGNORE_INDEX]


def expected_trained(tpl, tok, answers: list[str]) -> list[int]:
    eos = tok.convert_tokens_to_ids(tpl.eos)
    out: list[int] = []
    for answer in answers:
        out += tok(" " + answer, add_special_tokens=False, split_special_tokens=True)["input_ids"] + [eos]
    return out


# words and characters a real conversation has: unicode, whitespace at the edges, empty answers
TEXT = st.text(alphabet=st.sampled_from(list("abc xyzé漢🙂\n\t?.!,'-1")), max_size=24)


@st.composite
def conversations(draw):
    rounds = draw(st.integers(1, 4))
    turns, answers = [], []
    for i in range(rounds):
        question = draw(TEXT)
        if i == 0 and draw(st.booleans()):
            question = f"{IMAGE_PLACEHOLDER}\n{question}"
        answer = draw(TEXT)
        turns += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
        answers.append(answer)
    return turns, answers


@pytest.mark.parametrize("name", sorted(PAIRS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sample=conversations())
def test_ids_are_the_rendered_text_and_labels_are_exactly_the_answers(name, sample):
    conversation, answers = sample
    tpl, tok = template(name), tokenizer_for(name)
    enc = tpl.encode(conversation, tok)
    assert [t for t in enc.input_ids if t != IMAGE_TOKEN_INDEX] == plain_ids(tpl, tok, conversation)
    assert trained_ids(enc) == expected_trained(tpl, tok, answers)
    image_positions = [i for i, t in enumerate(enc.input_ids) if t == IMAGE_TOKEN_INDEX]
    assert all(enc.labels[i] == IGNORE_INDEX for i in image_positions)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_special_token_text_in_data_stays_text(name):
    tpl, tok = template(name), tokenizer_for(name)
    literal = "a </s> b <|im_end|> c <|endoftext|> d <eos>"
    conversation = [{"from": "human", "value": f"{IMAGE_PLACEHOLDER}\nsay {literal}"},
                    {"from": "gpt", "value": literal}]
    enc = tpl.encode(conversation, tok)
    eos = tok.convert_tokens_to_ids(tpl.eos)
    assert enc.input_ids.count(eos) == 1 and enc.input_ids[-1] == eos  # only the template's own end of turn
    assert tok.decode(trained_ids(enc)[:-1]) == " " + literal
    assert trained_ids(enc) == expected_trained(tpl, tok, [literal])
    prompt = tpl.generation_prompt(conversation[:1], tok)
    assert set(prompt) & set(tok.all_special_ids) <= set(tpl._bos(tok))  # the question's literals are text too


@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("value", [None, 3, ["red"]])
def test_a_non_string_answer_is_an_error(name, value):
    conversation = [{"from": "human", "value": "What colour?"}, {"from": "gpt", "value": value}]
    with pytest.raises(ValueError, match="turn 1: 'value' must be a string"):
        template(name).encode(conversation, tokenizer_for(name))


@settings(max_examples=40, deadline=None)
@given(caption=TEXT)
def test_pretrain_trains_exactly_the_caption_and_its_newline(caption):
    tpl, tok = template("pretrain"), tokenizer_for("llama")
    conversation = [{"from": "human", "value": f"{IMAGE_PLACEHOLDER}\nDescribe it."}, {"from": "gpt", "value": caption}]
    enc = tpl.encode(conversation, tok)
    body = tok(caption + "\n", add_special_tokens=False, split_special_tokens=True)["input_ids"]
    assert enc.input_ids == [tok.bos_token_id, IMAGE_TOKEN_INDEX, *body]
    assert trained_ids(enc) == body


def test_pretrain_caption_with_special_token_text_stays_text():
    tpl, tok = template("pretrain"), tokenizer_for("llama")
    enc = tpl.encode([{"from": "human", "value": IMAGE_PLACEHOLDER}, {"from": "gpt", "value": "a </s> b"}], tok)
    assert tok.eos_token_id not in enc.input_ids and tok.decode(trained_ids(enc)) == "a </s> b\n"


def test_a_cut_answer_is_counted_as_truncated():
    """An answer cut by max_length keeps its first tokens supervised, and the cut is counted (the trainer warns
    with the count before the first step): never silently."""
    from tinyllava.data.token_cache import tokenize_records

    tpl, tok = template("llama"), tokenizer_for("llama")
    conversation = [{"from": "human", "value": "Describe it."}, {"from": "gpt", "value": "a long answer " * 20}]
    full = tpl.encode(conversation, tok)
    cut = tokenize_records([{"id": "r1", "conversations": conversation}], tpl, tok, image_seq_len=4,
                           max_length=len(full.input_ids) - 5)
    assert cut.truncated == 1 and len(cut.ids) == len(full.input_ids) - 5
    whole = tokenize_records([{"id": "r1", "conversations": conversation}], tpl, tok, image_seq_len=4,
                             max_length=len(full.input_ids))
    assert whole.truncated == 0
