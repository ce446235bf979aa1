"""TinyLLaVA Factory's `llama` template: BOS, the shared system prompt, answers end with `</s>`."""

from __future__ import annotations

from typing import ClassVar

from tinyllava.kits.factory_templates import FactoryTemplate


class LlamaTemplate(FactoryTemplate):
    eos: ClassVar[str] = "</s>"
    add_bos: ClassVar[bool] = True
