"""The composite config: what is needed to rebuild the assembled model's skeleton offline."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from tinyllava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX


class TinyLlavaConfig(PretrainedConfig):
    model_type = "tinyllava"

    def __init__(
        self,
        components: dict[str, Any] | None = None,
        text_config: dict[str, Any] | None = None,
        vision_config: dict[str, Any] | None = None,
        hidden_size: int = 0,
        vision_hidden_size: int = 0,
        num_vision_tokens: int = 0,
        image_seq_len: int = 0,
        image_preprocess: str = "square",
        model_max_length: int = 2048,
        **kwargs: Any,
    ) -> None:
        self.components = components or {}
        self.text_config = text_config or {}
        self.vision_config = vision_config or {}
        self.hidden_size = hidden_size
        self.vision_hidden_size = vision_hidden_size
        self.num_vision_tokens = num_vision_tokens
        self.image_seq_len = image_seq_len
        self.image_preprocess = image_preprocess
        self.model_max_length = model_max_length
        self.image_token_index = IMAGE_TOKEN_INDEX
        self.ignore_index = IGNORE_INDEX
        super().__init__(**kwargs)
