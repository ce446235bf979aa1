"""TinyLLaVA Factory's `phi` template: the shared system prompt, answers end with `<|endoftext|>`, no BOS."""

from __future__ import annotations

from typing import ClassVar

from tinyllava.kits.factory_templates import FactoryTemplate


class PhiTemplate(FactoryTemplate):
    """Also the template the original pairs with StableLM-2, whose eos is `<|endoftext|>` too."""

    eos: ClassVar[str] = "<|endoftext|>"
    add_bos: ClassVar[bool] = False
