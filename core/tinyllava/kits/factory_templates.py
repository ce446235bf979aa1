"""TinyLLaVA Factory's segmented templates: `{system} USER: {q} ASSISTANT: {a}{eos}`, as a base to subclass.

A family plugin's template sets `eos` (the text that ends an answer) and `add_bos`; the system prompt,
the turn layout and the export to a Jinja chat template are shared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from tinyllava.templates.segmented import SegmentedTemplate

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerBase

FACTORY_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
#: The prompt pieces a local tokenizer learns merges from, so that Factory conversations take few ids.
FACTORY_PROMPT_CORPUS: tuple[str, ...] = (FACTORY_SYSTEM, "USER: ", " ASSISTANT: ")


class FactoryTemplate(SegmentedTemplate):
    """TinyLLaVA Factory's `{system} USER: {q} ASSISTANT: {a}{eos}` family; subclasses set `eos` / `add_bos`."""

    system: ClassVar[str] = FACTORY_SYSTEM

    def hf_llava_export(self, tokenizer: PreTrainedTokenizerBase) -> str:
        """The same prompt as Jinja, for an exported processor."""
        from tinyllava.interop.export_jinja import segmented_jinja

        return segmented_jinja(self, tokenizer)
