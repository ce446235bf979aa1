"""Shared checks for the LLM family plugins (llama, phi, qwen, gemma, stablelm ...).

They all reproduce TinyLLaVA Factory's `{system} USER: {q} ASSISTANT: {a}{eos}` templates and build, save and
reload tiny random models through the registry, so the checks are written once here. A family's tests keep
only what is its own: the golden ids of its local tokenizer, its eos, its members and their quirks.

Usage in a plugin's tests (everything is fetched through the public plugin path): subclass
`FactoryTemplateChecks` with the template's `name`, its `eos`/`eos_id`, the golden ids and `make_tokenizer()`;
call the `check_*` functions from the family's own tests with its members and folder names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

# Golden strings: written out here, not imported from a plugin, so that a changed prompt fails the tests.
FACTORY_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
CONVERSATION: list[dict[str, str]] = [
    {"from": "human", "value": "What is this?\n<image>"},
    {"from": "gpt", "value": "A cat."},
    {"from": "human", "value": "Sure?"},
    {"from": "gpt", "value": "Yes"},
]
# The text a family's local tokenizer learns its merges from, so that the golden ids stay short.
FACTORY_CORPUS: tuple[str, ...] = (FACTORY_SYSTEM, "USER: ", " ASSISTANT: ", "What is this?", "A cat.")


def registry() -> Any:
    from tinyllava.plugins.registry import get_registry

    return get_registry()


def family_tokenizer(llm_name: str, model_type: str) -> Any:
    """The local tokenizer (vocab 300) of `llm_name`'s member `model_type` that its tests' golden ids are made
    with: learnt from the Factory prompt, so that a conversation takes few ids."""
    from tinyllava.kits.tokenizers import build_family_tokenizer

    spec = registry().create("llm", llm_name, {"config": {}}).tokenizer_spec(model_type)
    return build_family_tokenizer(spec, list(FACTORY_CORPUS), 300)


class FactoryTemplateChecks:
    """Golden render, ids, labels, generation prompt and stop ids of a TinyLLaVA Factory template.

    Subclasses set `name` (the chat_template), the answers' `eos` text and `eos_id`, `bos_id` when the prefix
    starts with BOS, the golden ids of `CONVERSATION` with their tokenizer (`prefix`, `question1` starting
    with the image, `answer1`, `question2`, `answer2`; answers end with eos), and `make_tokenizer()`. It may be
    mixed with `ChatTemplateConformance`, which reads the same `name` and `make_tokenizer()`.
    """

    name: ClassVar[str] = ""
    eos: ClassVar[str] = ""
    eos_id: ClassVar[int] = -1
    bos_id: ClassVar[int | None] = None
    prefix: ClassVar[list[int]] = []
    question1: ClassVar[list[int]] = []
    answer1: ClassVar[list[int]] = []
    question2: ClassVar[list[int]] = []
    answer2: ClassVar[list[int]] = []

    def make_tokenizer(self) -> Any:
        raise NotImplementedError("return the tokenizer the golden ids were made with")

    def factory_template(self) -> Any:
        return registry().create("chat_template", self.name, {})

    def test_render_reproduces_tinyllava_factory_strings(self) -> None:
        template, eos = self.factory_template(), self.eos
        assert template.render(CONVERSATION) == (
            f"{FACTORY_SYSTEM} USER: <image>\nWhat is this? ASSISTANT: A cat.{eos}USER: Sure? ASSISTANT: Yes{eos}"
        )
        assert template.render(CONVERSATION[:1], add_generation_prompt=True) == (
            f"{FACTORY_SYSTEM} USER: <image>\nWhat is this? ASSISTANT:"
        )

    def test_golden_ids_and_labels(self) -> None:
        from tinyllava.constants import IGNORE_INDEX

        template, tok = self.factory_template(), self.make_tokenizer()
        template.check_tokenizer(tok)
        prefix_text = self.prefix
        if self.bos_id is not None:
            assert self.prefix[0] == tok.bos_token_id == self.bos_id
            prefix_text = self.prefix[1:]
        assert tok.decode(prefix_text) == FACTORY_SYSTEM + " USER: "
        assert tok.decode(self.question1[1:]) == "\nWhat is this? ASSISTANT:"
        assert tok.decode(self.answer1) == f" A cat.{self.eos}"
        assert tok.decode(self.question2) == "USER: Sure? ASSISTANT:"
        assert tok.decode(self.answer2) == f" Yes{self.eos}"
        enc = template.encode(CONVERSATION, tok)
        assert enc.input_ids == self.prefix + self.question1 + self.answer1 + self.question2 + self.answer2
        masked = [IGNORE_INDEX] * (len(self.prefix) + len(self.question1))
        assert enc.labels == masked + self.answer1 + [IGNORE_INDEX] * len(self.question2) + self.answer2

    def test_generation_prompt_and_stop(self) -> None:
        template, tok = self.factory_template(), self.make_tokenizer()
        assert template.generation_prompt(CONVERSATION[:1], tok) == self.prefix + self.question1
        assert template.stop_token_ids(tok) == [tok.convert_tokens_to_ids(self.eos)] == [self.eos_id]


@dataclass
class Reloaded:
    """What `check_build_save_reload` built, for a family's own checks on top."""

    llm: Any
    model: Any
    tokenizer: Any
    reloaded: Any
    reloaded_tokenizer: Any
    ids: Any  # the probe text's ids, on which both models gave the same logits


def check_build_save_reload(name: str, config: dict[str, Any], cls_name: str, folder: Path, *,
                            probe: str = "What is this?", same_tokens: str | None = None) -> Reloaded:
    """Build a tiny `name` model from `config`, save it to `folder` and reload it from there.

    Name `folder` after another member or family: the class must follow config.model_type, not the path.
    The reload must give the same class and logits on `probe`, and the same ids for `same_tokens` (if given);
    a skeleton from the JSON-round-tripped config must have the same class too.
    """
    import torch

    llm = registry().create("llm", name, {"config": config, "tokenizer_vocab_size": 300})
    model, tok = llm.build()
    assert type(model).__name__ == cls_name and model.config.vocab_size == len(tok)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    again, tok2 = registry().create("llm", name, {"source": str(folder)}).build()
    assert type(again).__name__ == cls_name
    ids = torch.tensor([tok(probe)["input_ids"]])
    assert torch.allclose(model(ids).logits, again(ids).logits, atol=1e-6)
    if same_tokens is not None:
        assert tok2(same_tokens)["input_ids"] == tok(same_tokens)["input_ids"]
    skeleton = llm.from_config(json.loads(json.dumps(model.config.to_dict())))
    assert type(skeleton).__name__ == cls_name
    return Reloaded(llm, model, tok, again, tok2, ids)


def check_native_template(tokenizer: Any, first_exchange: str, trained: str, stop_ids: list[int]) -> Any:
    """The `native` template with a family's local tokenizer, which carries the family's own chat template:
    it renders the first exchange as `first_exchange`, trains exactly `trained` and stops at `stop_ids`.
    Returns the encoded `CONVERSATION` for the family's own checks."""
    from tinyllava.constants import IGNORE_INDEX

    native = registry().create("chat_template", "native", {})
    native.check_tokenizer(tokenizer)
    assert native.render(CONVERSATION[:2], tokenizer=tokenizer) == first_exchange
    enc = native.encode(CONVERSATION, tokenizer)
    kept = [t for t, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != IGNORE_INDEX]
    assert tokenizer.decode(kept) == trained
    assert native.stop_token_ids(tokenizer) == stop_ids
    return enc


def check_refused_before_weights(name: str, config: Any, folder: Path, match: str) -> None:
    """Only `config` (a transformers config of another model) is saved: the error must come from the
    model_type check, not from the missing weights."""
    from tinyllava.testing.conformance import check_source_refused

    check_source_refused("llm", name, config, folder, match)


def check_options_need_exactly_one_source(name: str) -> None:
    """`source` and `config` exclude each other, and `gguf_file` needs `source`."""
    from pydantic import ValidationError

    cls = registry().component_class("llm", name)
    with pytest.raises(ValidationError, match="exactly one of"):
        cls.Options.model_validate({})
    with pytest.raises(ValidationError, match="gguf_file"):
        cls.Options.model_validate({"config": {}, "gguf_file": "x.gguf"})
