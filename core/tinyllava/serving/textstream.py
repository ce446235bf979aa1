"""Token ids -> answer text, one token at a time, the same way for streamed and whole answers.

The text is the tokenizer's decoding (special tokens skipped) with outer whitespace stripped, as `tinyllava
predict` writes it; a stop string ends the answer before it. While streaming, what could still change is held
back: trailing whitespace (it may be stripped at the end), an incomplete UTF-8 character, and an ending that
could be the start of a stop string.
"""

from __future__ import annotations

from typing import Any

_REPLACEMENT = "\ufffd"


class TextStream:
    def __init__(self, tokenizer: Any, stops: list[str] | None = None) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in (stops or []) if s]
        self.ids: list[int] = []
        self.sent = ""
        self.stopped = False  # a stop string ended the answer
        self._final: str | None = None

    def _text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True).lstrip()

    def push(self, token: int) -> str:
        """Add one token; the new text that is safe to show now ('' if none)."""
        if self.stopped:
            return ""
        self.ids.append(int(token))
        text = self._text()
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._final = text[:cut]
            return ""
        safe = text.rstrip()
        while safe.endswith(_REPLACEMENT):
            safe = safe[:-1]
        hold = max((n for s in self.stops for n in range(1, len(s)) if safe.endswith(s[:n])), default=0)
        safe = safe[:len(safe) - hold]
        if len(safe) > len(self.sent) and safe.startswith(self.sent):
            new = safe[len(self.sent):]
            self.sent = safe
            return new
        return ""

    def final(self) -> str:
        """The whole answer (after the last token)."""
        if self._final is None:
            self._final = self._text().strip()
        return self._final

    def finish(self) -> str:
        """The text not shown yet: the whole answer is `sent + finish()` whenever decoding only ever appended."""
        final = self.final()
        rest = final[len(self.sent):] if final.startswith(self.sent) else ""
        self.sent += rest
        return rest
