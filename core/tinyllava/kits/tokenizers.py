"""Byte-level BPE tokenizers trained locally with a family's own special tokens (tests, random-init models).

Nothing is downloaded: the vocabulary is learnt from a small corpus, so a tiny model of any family can be
built offline, and its tokenizer still has the tokens that family's templates and quirks depend on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TokenizerSpec:
    """The special tokens of a family's tokenizer and which of them play bos/eos/unk/pad.

    `special` tokens come first in the vocabulary (ids 0, 1, ...), in this order; `added` are extra
    non-special added tokens (e.g. Qwen 3's `<think>`); `chat_template` is a Jinja template or None;
    `add_bos`: plain `tokenizer(text)` calls prepend bos, as Gemma's and Llama-style tokenizers do.
    """

    special: tuple[str, ...]
    eos: str
    bos: str | None = None
    unk: str | None = None
    pad: str | None = None
    added: tuple[str, ...] = ()
    chat_template: str | None = None
    extra_corpus: tuple[str, ...] = field(default=())
    add_bos: bool = False

    def __post_init__(self) -> None:
        for role in (self.eos, self.bos, self.unk, self.pad):
            if role is not None and role not in self.special:
                raise ValueError(f"{role!r} must be one of the special tokens {self.special}")
        if self.add_bos and self.bos is None:
            raise ValueError("add_bos needs a bos token")


def build_family_tokenizer(spec: TokenizerSpec, corpus: list[str], vocab_size: int) -> Any:
    """Deterministic: the same spec, corpus and size give the same vocabulary, merges and ids."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=spec.unk))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(spec.special),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([*corpus, *spec.extra_corpus], trainer=trainer)
    if spec.add_bos:
        bos_id = tok.token_to_id(spec.bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{spec.bos} $A", pair=f"{spec.bos} $A {spec.bos} $B", special_tokens=[(spec.bos, bos_id)]
        )
    if spec.added:
        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in spec.added])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=spec.bos,
        eos_token=spec.eos,
        unk_token=spec.unk,
        pad_token=spec.pad,
        padding_side="right",
    )
    extra = [t for t in spec.special if t not in (spec.bos, spec.eos, spec.unk, spec.pad)]
    if extra:
        wrapped.add_special_tokens({"additional_special_tokens": extra})
    if spec.chat_template is not None:
        wrapped.chat_template = spec.chat_template
    return wrapped


#: Llama 2 / TinyLlama's special tokens (unk 0, bos 1, eos 2, pad 3): the tokenizer of random-init Llama-style models.
LLAMA_SPEC = TokenizerSpec(special=("<unk>", "<s>", "</s>", "<pad>"), bos="<s>", eos="</s>", unk="<unk>", pad="<pad>")


def build_byte_tokenizer(corpus: list[str], vocab_size: int) -> Any:
    """A Llama-style tokenizer (`LLAMA_SPEC`) learnt from `corpus`: deterministic, no hub access."""
    return build_family_tokenizer(LLAMA_SPEC, corpus, vocab_size)
