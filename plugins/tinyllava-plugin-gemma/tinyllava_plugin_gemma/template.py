"""TinyLLaVA Factory's `gemma` template: BOS, the shared system prompt, answers end with `<eos>`."""

from __future__ import annotations

from typing import ClassVar

from tinyllava.kits.factory_templates import FactoryTemplate


class GemmaTemplate(FactoryTemplate):
    """BOS first (masked): Gemma models degrade badly without it."""

    eos: ClassVar[str] = "<eos>"
    add_bos: ClassVar[bool] = True
