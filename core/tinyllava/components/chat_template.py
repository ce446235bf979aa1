"""Contract for chat templates: conversation -> token ids and labels, built turn by turn."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from tinyllava.components.base import Component

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerBase

Turn = dict[str, Any]  # {"from": "human" | "gpt", "value": str}


class Encoded(NamedTuple):
    """Token ids with one IMAGE_TOKEN_INDEX per image, and labels (IGNORE_INDEX where not trained)."""

    input_ids: list[int]
    labels: list[int]


class ChatTemplate(Component):
    kind: ClassVar[str] = "chat_template"

    @abstractmethod
    def encode(self, conversation: list[Turn], tokenizer: PreTrainedTokenizerBase) -> Encoded:
        """Ids and labels for training: only assistant answers (and their end token) are trained."""

    @abstractmethod
    def generation_prompt(self, conversation: list[Turn], tokenizer: PreTrainedTokenizerBase) -> list[int]:
        """Ids for a conversation that ends with a human turn, ready for the assistant's answer."""

    @abstractmethod
    def render(
        self, conversation: list[Turn], add_generation_prompt: bool = False, tokenizer: Any = None
    ) -> str:
        """The prompt as one string (for display and golden tests); templates that need the tokenizer to
        render (e.g. Jinja templates shipped with it) take it here."""

    @abstractmethod
    def stop_token_ids(self, tokenizer: PreTrainedTokenizerBase) -> list[int]:
        """Token ids that end an answer (generation stops at any of them)."""

    def check_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> None:
        """Raise ValueError with a fix when this template cannot work with this tokenizer."""

    # -- export contract (transformers' LLaVA layout) -------------------------------------------------
    def hf_llava_export(self, tokenizer: PreTrainedTokenizerBase) -> str:
        """A Jinja chat template that, rendered with `add_generation_prompt=True` and tokenised by the exported
        processor (which adds what `tokenizer(text)` adds), gives exactly `generation_prompt`'s ids, each
        `<image>` where an image goes (`tinyllava.interop.export_jinja` builds it for segmented templates).
        Raise `NotExportable` when no Jinja can; the default refuses."""
        from tinyllava.interop.export_contract import not_exportable_by_default

        raise not_exportable_by_default(self)
