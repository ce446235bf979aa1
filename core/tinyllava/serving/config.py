"""What a running server allows: batching, limits, the key. Plain data, no imports of the web stack."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServeConfig:
    model_id: str
    max_batch: int = 16
    max_wait_ms: float = 10.0
    api_key: str | None = None
    max_image_bytes: int = 20 * 1024 * 1024        # encoded file size, after base64 decoding
    max_image_pixels: int = 40_000_000             # width x height, checked from the header before decoding
    max_images: int = 1                            # the model takes one image per conversation
    default_max_tokens: int = 256                  # when a request gives none (less if the context is shorter)
    context_length: int = 2048                     # prompt (image positions included) + answer
    max_body_bytes: int = 0                        # 0: derived from max_image_bytes (base64 + some text)

    def body_limit(self) -> int:
        if self.max_body_bytes > 0:
            return self.max_body_bytes
        return self.max_image_bytes * 4 // 3 * self.max_images + 1024 * 1024
