"""The `native` chat template: the tokenizer's own Jinja chat template (ChatML, Gemma turns, Llama 3 ...).

Labels come from the template itself. When its Jinja marks assistant text with `{% generation %}`, the
tokens transformers reports in `assistant_masks` are trained. Otherwise each assistant turn is located by
rendering the conversation prefixes: the turn starts where the prefix rendered with the generation prompt
ends, and it ends where the prefix including the turn ends (or, for templates that render earlier turns
differently, at the template's end-of-turn marker). Either way the result is a set of character spans of
the rendered text; tokens overlapping them are trained, everything else is IGNORE_INDEX.

`<image>` is moved to the front of its turn, as the other templates do, and each one becomes one
IMAGE_TOKEN_INDEX: the rendered text is split at `<image>` and each chunk is tokenised on its own.
Tokens after the last trained one (e.g. the newline after `<|im_end|>`) are dropped from training
sequences, so a sequence ends with the end-of-turn token, as in the segmented templates.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from tinyllava.components.base import ComponentOptions
from tinyllava.components.chat_template import ChatTemplate, Encoded, Turn
from tinyllava.constants import IGNORE_INDEX, IMAGE_PLACEHOLDER, IMAGE_TOKEN_INDEX
from tinyllava.templates.segmented import image_first, split_rounds

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerBase

GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")
PROBE_QUESTION = "tinyllava probe question"
PROBE_ANSWER = "tinyllava probe answer"
Message = dict[str, str]
Span = tuple[int, int]


class NativeOptions(ComponentOptions):
    system: str | None = Field(
        None, description="a system message put first (None: whatever the tokenizer's template does by itself)"
    )
    jinja: str | None = Field(
        None, description="a Jinja chat template (or the name of one of the tokenizer's) used instead of its default"
    )
    template_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="extra variables for the Jinja template, e.g. {enable_thinking: false}"
    )


class NativeTemplate(ChatTemplate):
    """Conversations rendered by the tokenizer's chat template; assistant turns (and their end token) trained."""

    Options: ClassVar[type[ComponentOptions]] = NativeOptions

    def hf_llava_export(self, tokenizer: Any) -> Any:
        from tinyllava.interop.export_contract import refuse

        refuse(self, "its prompt is the tokenizer's own Jinja over text messages, and no equivalent for a "
                     "processor's image messages is known to give the same token ids")

    # -- rendering ------------------------------------------------------------------------------
    def messages(self, conversation: list[Turn], open_end: bool) -> list[Message]:
        """LLaVA turns -> chat messages; a leading non-human turn is skipped, as in the other templates."""
        opts: NativeOptions = self.options  # type: ignore[assignment]
        out: list[Message] = [{"role": "system", "content": opts.system}] if opts.system is not None else []
        for question, answer in split_rounds(conversation, allow_open_end=open_end):
            out.append({"role": "user", "content": image_first(question)})
            if answer is not None:
                out.append({"role": "assistant", "content": answer})
        return out

    def jinja_source(self, tokenizer: PreTrainedTokenizerBase) -> str:
        """The Jinja text in use; a ValueError with the fix when the tokenizer has none."""
        try:
            return tokenizer.get_chat_template(self.options.jinja)  # type: ignore[attr-defined]
        except ValueError:
            raise ValueError(
                "chat template 'native' needs a tokenizer with a chat template, and this one has none; "
                "give one with the option `jinja`, or pick the template made for this LLM family "
                "(see `tinyllava components --kind chat_template`)"
            ) from None

    def has_generation_markers(self, tokenizer: PreTrainedTokenizerBase) -> bool:
        return bool(GENERATION_TAG.search(self.jinja_source(tokenizer)))

    def _render(self, tokenizer: PreTrainedTokenizerBase, messages: list[Message], add_generation_prompt: bool) -> str:
        return tokenizer.apply_chat_template(
            messages, chat_template=self.jinja_source(tokenizer), add_generation_prompt=add_generation_prompt,
            tokenize=False, **self.options.template_kwargs,  # type: ignore[attr-defined]
        )

    def render(self, conversation: list[Turn], add_generation_prompt: bool = False,
               tokenizer: PreTrainedTokenizerBase | None = None) -> str:
        """The prompt as the tokenizer's template writes it; the template lives in the tokenizer, so pass it."""
        if tokenizer is None:
            raise ValueError("the 'native' template renders with a tokenizer's own chat template: pass tokenizer=")
        return self._render(tokenizer, self.messages(conversation, add_generation_prompt), add_generation_prompt)

    # -- where the assistant turns are ----------------------------------------------------------
    def assistant_spans(self, tokenizer: PreTrainedTokenizerBase, messages: list[Message]) -> tuple[str, list[Span]]:
        """The rendered conversation and the character spans of its assistant turns (end token included)."""
        text = self._render(tokenizer, messages, False)
        if self.has_generation_markers(tokenizer):
            spans = self._marked_spans(tokenizer, messages, text)
        else:
            spans = self._prefix_spans(tokenizer, messages, text)
        if any(m["role"] == "assistant" for m in messages) and not spans:
            raise ValueError("the chat template marks no assistant text in this conversation, so nothing would train")
        return text, spans

    def _marked_spans(self, tokenizer: PreTrainedTokenizerBase, messages: list[Message], text: str) -> list[Span]:
        """From transformers' `assistant_masks` (the `{% generation %}` blocks), as character spans."""
        out = tokenizer.apply_chat_template(
            messages, chat_template=self.jinja_source(tokenizer), tokenize=True, return_dict=True,
            return_assistant_tokens_mask=True, **self.options.template_kwargs,  # type: ignore[attr-defined]
        )
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        if len(offsets) != len(out["input_ids"]):
            raise ValueError("the chat template renders differently from one call to the next; cannot place labels")
        spans: list[Span] = []
        for flag, (start, end) in zip(out["assistant_masks"], offsets, strict=True):
            if not flag:
                continue
            if spans and start <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
            else:
                spans.append((start, end))
        return spans

    def _prefix_spans(self, tokenizer: PreTrainedTokenizerBase, messages: list[Message], text: str) -> list[Span]:
        """No `{% generation %}` markers: find each assistant turn by rendering the conversation's prefixes."""
        spans: list[Span] = []
        end_marker: str | None = None
        for j, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before = self._render(tokenizer, messages[:j], True)
            if not text.startswith(before):
                raise ValueError(
                    f"the chat template renders the conversation before assistant turn {j} differently when more "
                    "turns follow, so its tokens cannot be located; add {% generation %} markers to the template "
                    "(option `jinja`) or pick the template made for this LLM family"
                )
            start = len(before)
            after = self._render(tokenizer, messages[: j + 1], False)
            if text.startswith(after):
                end = len(after)
            else:  # earlier turns rendered differently from the last one (e.g. reasoning stripped)
                end_marker = end_marker if end_marker is not None else self.end_of_turn(tokenizer)
                found = text.find(end_marker, start) if end_marker else -1
                if found < 0:
                    raise ValueError(f"cannot find where assistant turn {j} ends in the rendered conversation")
                end = found + len(end_marker)
            while end > start and text[end - 1].isspace():  # the newline between turns is not the answer
                end -= 1
            spans.append((start, end))
        return spans

    def end_of_turn(self, tokenizer: PreTrainedTokenizerBase) -> str:
        """What the template writes after an answer's text (e.g. `<|im_end|>`), found with a probe."""
        messages = self.messages([{"from": "human", "value": PROBE_QUESTION}, {"from": "gpt", "value": PROBE_ANSWER}],
                                 False)
        before = self._render(tokenizer, messages[:-1], True)
        text = self._render(tokenizer, messages, False)
        if not text.startswith(before) or PROBE_ANSWER not in text[len(before):]:
            return ""
        return text[text.index(PROBE_ANSWER, len(before)) + len(PROBE_ANSWER):].strip()

    # -- tokens ---------------------------------------------------------------------------------
    def _tokenize(self, tokenizer: PreTrainedTokenizerBase, text: str, spans: list[Span]) -> Encoded:
        """Each `<image>` -> one IMAGE_TOKEN_INDEX; tokens overlapping an assistant span keep their id as label."""
        ids: list[int] = []
        labels: list[int] = []
        base = 0
        for i, chunk in enumerate(text.split(IMAGE_PLACEHOLDER)):
            if i > 0:
                ids.append(IMAGE_TOKEN_INDEX)
                labels.append(IGNORE_INDEX)
                base += len(IMAGE_PLACEHOLDER)
            if chunk:
                enc = tokenizer(chunk, add_special_tokens=False, return_offsets_mapping=True)
                for tok, (start, end) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
                    trained = any(base + start < s_end and base + end > s_start for s_start, s_end in spans)
                    ids.append(tok)
                    labels.append(tok if trained else IGNORE_INDEX)
            base += len(chunk)
        return Encoded(ids, labels)

    def _check_images(self, messages: list[Message], text: str) -> None:
        wanted = sum(m["content"].count(IMAGE_PLACEHOLDER) for m in messages)
        if text.count(IMAGE_PLACEHOLDER) != wanted:
            raise ValueError(f"the chat template wrote {text.count(IMAGE_PLACEHOLDER)} <image> tags for {wanted}")

    def encode(self, conversation: list[Turn], tokenizer: PreTrainedTokenizerBase) -> Encoded:
        messages = self.messages(conversation, False)
        text, spans = self.assistant_spans(tokenizer, messages)
        self._check_images(messages, text)
        enc = self._tokenize(tokenizer, text, spans)
        last = max((i for i, lab in enumerate(enc.labels) if lab != IGNORE_INDEX), default=len(enc.labels) - 1)
        return Encoded(enc.input_ids[: last + 1], enc.labels[: last + 1])

    def generation_prompt(self, conversation: list[Turn], tokenizer: PreTrainedTokenizerBase) -> list[int]:
        messages = self.messages(conversation, True)
        if messages[-1]["role"] != "user":
            raise ValueError("a generation prompt needs a conversation that ends with a human turn")
        text = self._render(tokenizer, messages, True)
        self._check_images(messages, text)
        return self._tokenize(tokenizer, text, []).input_ids

    def stop_token_ids(self, tokenizer: PreTrainedTokenizerBase) -> list[int]:
        """The template's end-of-turn token (one token, or an added token first) and the tokenizer's eos."""
        stop: list[int] = []
        marker = self.end_of_turn(tokenizer)
        if marker:
            ids = tokenizer(marker, add_special_tokens=False)["input_ids"]
            if len(ids) == 1 or tokenizer.convert_ids_to_tokens(ids[0]) in tokenizer.get_added_vocab():
                stop.append(ids[0])
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in stop:
            stop.append(tokenizer.eos_token_id)
        return stop

    def check_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.jinja_source(tokenizer)
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(
                "chat template 'native' places labels with token offsets, which need a fast (Rust) tokenizer; "
                "load the tokenizer with use_fast=True"
            )
        probe = [{"from": "human", "value": PROBE_QUESTION}, {"from": "gpt", "value": PROBE_ANSWER}]
        try:
            enc = self.encode(probe, tokenizer)
        except Exception as exc:  # noqa: BLE001 - Jinja errors (raise_exception ...) become one clear message
            raise ValueError(f"chat template 'native' cannot use this tokenizer's chat template: {exc}") from None
        trained = tokenizer.decode([t for t, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != IGNORE_INDEX])
        if PROBE_ANSWER not in trained:
            raise ValueError(f"the chat template's assistant text does not contain the answer: {trained!r}")
        if not self.stop_token_ids(tokenizer):
            raise ValueError("this tokenizer has no eos token and its chat template no one-token end of turn")
