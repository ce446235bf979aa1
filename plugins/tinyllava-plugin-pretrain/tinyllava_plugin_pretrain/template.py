"""TinyLLaVA Factory's `pretrain` template: `<image>` then the caption and a newline; the question is dropped."""

from __future__ import annotations

from typing import Any

from tinyllava.templates.segmented import CaptionTemplate


class PretrainTemplate(CaptionTemplate):
    """BOS (when the tokenizer has one) and the image are masked; the caption and `\\n` are trained."""

    def hf_llava_export(self, tokenizer: Any) -> str:
        """The same prompt as Jinja (BOS, then the image), for an exported processor."""
        from tinyllava.interop.export_jinja import caption_jinja

        return caption_jinja(self, tokenizer)
