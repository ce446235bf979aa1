"""Templates made of text segments, each tokenised on its own and either trained or masked.

Labels come from the segments themselves, never from re-tokenising the whole prompt and
subtracting offsets, so there is no "tokenization mismatch" and no sample is silently dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from tinyllava.components.base import ComponentOptions
from tinyllava.components.chat_template import ChatTemplate, Encoded, Turn
from tinyllava.constants import IGNORE_INDEX, IMAGE_PLACEHOLDER, IMAGE_TOKEN_INDEX

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerBase

HUMAN, GPT = "human", "gpt"


def image_first(text: str) -> str:
    """Move `<image>` to the front of its turn, as TinyLLaVA Factory does: "<image>\\n" + the rest."""
    if IMAGE_PLACEHOLDER not in text:
        return text
    count = text.count(IMAGE_PLACEHOLDER)
    rest = text.replace(IMAGE_PLACEHOLDER, "").strip()
    return (IMAGE_PLACEHOLDER + "\n") * count + rest


def image_last(text: str) -> str:
    """Move `<image>` to the end of its turn: the question first, then the image."""
    if IMAGE_PLACEHOLDER not in text:
        return text
    count = text.count(IMAGE_PLACEHOLDER)
    rest = text.replace(IMAGE_PLACEHOLDER, "").strip()
    return rest + ("\n" + IMAGE_PLACEHOLDER) * count


def tokenize_segment(text: str, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids of one segment; each `<image>` becomes one IMAGE_TOKEN_INDEX, text chunks tokenised alone.

    The text is data: a special token's text inside it (a literal `</s>` or `<|im_end|>` in an answer) stays
    text (`split_special_tokens`), so data can never end a turn early or forge a role."""
    ids: list[int] = []
    chunks = text.split(IMAGE_PLACEHOLDER)
    for i, chunk in enumerate(chunks):
        if i > 0:
            ids.append(IMAGE_TOKEN_INDEX)
        if chunk:
            ids.extend(tokenizer(chunk, add_special_tokens=False, split_special_tokens=True)["input_ids"])
    return ids


def tokenize_answer(text: str, eos: str, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """An answer segment: its text as data, then the template's own end-of-answer token, as a special token."""
    if eos and text.endswith(eos):
        return tokenize_segment(text[: -len(eos)], tokenizer) + tokenizer(eos, add_special_tokens=False)["input_ids"]
    return tokenize_segment(text, tokenizer)


def tokenize_following(text: str, special: str, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """A segment that follows the special token `special` in the rendered text, tokenised as the whole text is.

    SentencePiece tokenizers with `legacy=False` start text after a special token without a word-start piece
    (`</s>USER` is `</s>`, `US`...), while the segment on its own would get one (`▁US`): the segment is
    tokenised behind the special token and the special token's ids are dropped. Data holding special-token
    text keeps the plain path (it must stay text, which one call cannot do for both parts)."""
    chunks = text.split(IMAGE_PLACEHOLDER)
    first = chunks[0]
    if not first or any(s in first for s in tokenizer.all_special_tokens):
        return tokenize_segment(text, tokenizer)
    head = tokenizer(special, add_special_tokens=False)["input_ids"]
    both = tokenizer(special + first, add_special_tokens=False)["input_ids"]
    if both[: len(head)] != head:
        return tokenize_segment(text, tokenizer)
    rest = IMAGE_PLACEHOLDER + IMAGE_PLACEHOLDER.join(chunks[1:]) if len(chunks) > 1 else ""
    return both[len(head):] + tokenize_segment(rest, tokenizer)


def _text(turn: Turn, index: int) -> str:
    """A turn's text; anything else (None, a number) is an error, never the text "None"."""
    value = turn.get("value", "")
    if not isinstance(value, str):
        raise ValueError(f"turn {index}: 'value' must be a string, not {type(value).__name__} ({value!r:.40})")
    return value


def split_rounds(conversation: list[Turn], *, allow_open_end: bool) -> list[tuple[str, str | None]]:
    """(question, answer) pairs; a leading non-human turn is skipped, as in the original."""
    turns = list(conversation)
    while turns and turns[0].get("from") != HUMAN:
        turns = turns[1:]
    rounds: list[tuple[str, str | None]] = []
    for i in range(0, len(turns), 2):
        q = turns[i]
        if q.get("from") != HUMAN:
            raise ValueError(f"turn {i}: expected 'human', got {q.get('from')!r} (turns must alternate)")
        if i + 1 < len(turns):
            a = turns[i + 1]
            if a.get("from") != GPT:
                raise ValueError(f"turn {i + 1}: expected 'gpt', got {a.get('from')!r} (turns must alternate)")
            rounds.append((_text(q, i), _text(a, i + 1)))
        elif allow_open_end:
            rounds.append((_text(q, i), None))
        else:
            raise ValueError("the conversation ends with a human turn that has no answer")
    if not rounds:
        raise ValueError("the conversation has no human turn")
    return rounds


class SegmentedOptions(ComponentOptions):
    image_placement: Literal["first", "last"] = Field(
        "first",
        description="first: `<image>\\n` opens its turn, whatever the data says (TinyLLaVA Factory); "
        "last: the question comes first and the image after it, so image tokens can attend to the question",
    )


class SegmentedTemplate(ChatTemplate):
    """`{system} USER: {q} ASSISTANT: {a}{eos}USER: ...` with per-segment ids and labels.

    Subclasses set the class attributes; `eos` is the literal end-of-answer token string.
    """

    Options: ClassVar[type[ComponentOptions]] = SegmentedOptions

    system: ClassVar[str] = ""
    user_format: ClassVar[str] = "USER: {content} "
    assistant_marker: ClassVar[str] = "ASSISTANT:"
    answer_format: ClassVar[str] = " {content}{eos}"
    eos: ClassVar[str] = "</s>"
    add_bos: ClassVar[bool] = False

    def _eos(self, tokenizer: PreTrainedTokenizerBase) -> str:
        return self.eos

    def segments(self, conversation: list[Turn], open_end: bool, eos: str) -> list[tuple[str, bool]]:
        """[(text, trained)] for the whole conversation."""
        rounds = split_rounds(conversation, allow_open_end=open_end)
        if not open_end and rounds[-1][1] is None:
            raise ValueError("the conversation ends with a human turn that has no answer")
        out: list[tuple[str, bool]] = []
        for i, (question, answer) in enumerate(rounds):
            prefix = (self.system + " ") if (i == 0 and self.system) else ""
            placed = image_last(question) if self.options.image_placement == "last" else image_first(question)
            out.append((prefix + self.user_format.format(content=placed) + self.assistant_marker, False))
            if answer is not None:
                out.append((self.answer_format.format(content=answer, eos=eos), True))
        return out

    def render(
        self, conversation: list[Turn], add_generation_prompt: bool = False, tokenizer: Any = None
    ) -> str:
        return "".join(text for text, _ in self.segments(conversation, add_generation_prompt, self.eos))

    def _bos(self, tokenizer: PreTrainedTokenizerBase) -> list[int]:
        if self.add_bos and tokenizer.bos_token_id is not None:
            return [tokenizer.bos_token_id]
        return []

    def encode(self, conversation: list[Turn], tokenizer: PreTrainedTokenizerBase) -> Encoded:
        ids = self._bos(tokenizer)
        labels = [IGNORE_INDEX] * len(ids)
        eos = self._eos(tokenizer)
        after_eos = False
        for text, trained in self.segments(conversation, False, eos):
            if trained:
                seg = tokenize_answer(text, eos, tokenizer)
            else:
                seg = tokenize_following(text, eos, tokenizer) if after_eos else tokenize_segment(text, tokenizer)
            after_eos = trained and bool(eos) and text.endswith(eos)
            ids += seg
            labels += [t if trained and t != IMAGE_TOKEN_INDEX else IGNORE_INDEX for t in seg]
        return Encoded(ids, labels)

    def generation_prompt(self, conversation: list[Turn], tokenizer: PreTrainedTokenizerBase) -> list[int]:
        segs = self.segments(conversation, True, self._eos(tokenizer))
        if segs[-1][1]:
            raise ValueError("a generation prompt needs a conversation that ends with a human turn")
        ids = self._bos(tokenizer)
        eos, after_eos = self._eos(tokenizer), False
        for text, trained in segs:
            if trained:
                ids += tokenize_answer(text, eos, tokenizer)
            else:
                ids += tokenize_following(text, eos, tokenizer) if after_eos else tokenize_segment(text, tokenizer)
            after_eos = trained and bool(eos) and text.endswith(eos)
        return ids

    def stop_token_ids(self, tokenizer: PreTrainedTokenizerBase) -> list[int]:
        return [tokenizer.convert_tokens_to_ids(self._eos(tokenizer))]

    def check_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> None:
        eos = self._eos(tokenizer)
        ids = tokenizer(eos, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(
                f"chat template {self.name or type(self).__name__!r} ends answers with {eos!r}, but this tokenizer "
                f"splits it into {len(ids)} tokens; pick the template made for this LLM family "
                f"(see `tinyllava components --kind chat_template`)"
            )


class CaptionTemplate(ChatTemplate):
    """Stage-1 alignment: `<image>` (masked) then the caption and a newline (trained); the question is dropped."""

    add_bos: ClassVar[bool] = True
    caption_end: ClassVar[str] = "\n"

    def _caption(self, conversation: list[Turn]) -> str:
        rounds = split_rounds(conversation, allow_open_end=True)
        answer = rounds[0][1]
        return answer if answer is not None else ""

    def render(
        self, conversation: list[Turn], add_generation_prompt: bool = False, tokenizer: Any = None
    ) -> str:
        if add_generation_prompt:
            return IMAGE_PLACEHOLDER
        return IMAGE_PLACEHOLDER + self._caption(conversation) + self.caption_end

    def _bos(self, tokenizer: PreTrainedTokenizerBase) -> list[int]:
        return [tokenizer.bos_token_id] if self.add_bos and tokenizer.bos_token_id is not None else []

    def encode(self, conversation: list[Turn], tokenizer: PreTrainedTokenizerBase) -> Encoded:
        head = self._bos(tokenizer) + [IMAGE_TOKEN_INDEX]
        body = tokenize_segment(self._caption(conversation) + self.caption_end, tokenizer)
        return Encoded(head + body, [IGNORE_INDEX] * len(head) + body)

    def generation_prompt(self, conversation: list[Turn], tokenizer: PreTrainedTokenizerBase) -> list[int]:
        return self._bos(tokenizer) + [IMAGE_TOKEN_INDEX]

    def stop_token_ids(self, tokenizer: PreTrainedTokenizerBase) -> list[int]:
        ids = tokenizer(self.caption_end, add_special_tokens=False)["input_ids"]
        return ids[-1:] + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])
