"""TinyLLaVA Factory's Qwen templates: the shared system prompt, no BOS; base and instruct end answers differently."""

from __future__ import annotations

from typing import ClassVar

from tinyllava.kits.factory_templates import FactoryTemplate


class Qwen2BaseTemplate(FactoryTemplate):
    """For base checkpoints, whose eos is `<|endoftext|>`."""

    eos: ClassVar[str] = "<|endoftext|>"


class Qwen2InstructTemplate(FactoryTemplate):
    """For instruct checkpoints, whose turns end with `<|im_end|>`."""

    eos: ClassVar[str] = "<|im_end|>"
