"""TinyLLaVA Factory's `pretrain` template: `<image>` then the caption and a newline; the question is dropped."""

from __future__ import annotations

from tinyllava.templates.segmented import CaptionTemplate


class PretrainTemplate(CaptionTemplate):
    """BOS (when the tokenizer has one) and the image are masked; the caption and `\\n` are trained."""
