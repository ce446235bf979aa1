"""Batched, left-padded generation over conversations, using the checkpoint's template and preprocessing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyllava.constants import IMAGE_PLACEHOLDER, IMAGE_TOKEN_INDEX


@dataclass
class GenerationSettings:
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None


class Pipeline:
    """Wraps a loaded checkpoint. `answer()` takes conversations ending with a human turn."""

    def __init__(self, loaded: Any) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.template = loaded.template
        self.image_processor = loaded.image_processor
        self.image_seq_len = int(self.model.config.image_seq_len)
        self.image_preprocess = loaded.manifest.get("image_preprocess", "square")

    @classmethod
    def from_checkpoint(cls, path: Path, device: str | None = None) -> Pipeline:
        from tinyllava.checkpoint import load_checkpoint

        return cls(load_checkpoint(path, device=device))

    def prompt_ids(self, conversation: list[dict[str, str]]) -> list[int]:
        ids = self.template.generation_prompt(conversation, self.tokenizer)
        out: list[int] = []
        for tok in ids:
            out += [IMAGE_TOKEN_INDEX] * self.image_seq_len if tok == IMAGE_TOKEN_INDEX else [tok]
        return out

    def pixel_values(self, image: Any) -> Any:
        from tinyllava.data.images import open_image, preprocess_image

        return preprocess_image(open_image(image), self.image_processor, self.image_preprocess)

    def answer(
        self,
        conversations: list[list[dict[str, str]]],
        images: list[Any],
        settings: GenerationSettings | None = None,
    ) -> list[str]:
        """One answer per conversation; `images[i]` is a path, a PIL image or None."""
        import torch

        settings = settings or GenerationSettings()
        device = next(self.model.parameters()).device
        rows = [self.prompt_ids(c) for c in conversations]
        for conv, ids, image in zip(conversations, rows, images, strict=True):
            has_tag = any(IMAGE_PLACEHOLDER in t.get("value", "") for t in conv)
            if has_tag != (image is not None):
                raise ValueError("a conversation must contain <image> exactly when an image is given")
            if image is not None and IMAGE_TOKEN_INDEX not in ids:
                raise ValueError("the template dropped the <image> tag")
        longest = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, longest - len(r):] = torch.tensor(r)
            mask[i, longest - len(r):] = 1
        pixels = [self.pixel_values(img) for img in images if img is not None]
        pixel_values = torch.stack(pixels).to(device) if pixels else None
        stop = self.template.stop_token_ids(self.tokenizer)
        kwargs: dict[str, Any] = {
            "max_new_tokens": settings.max_new_tokens,
            "eos_token_id": stop,
            "pad_token_id": pad,
            "use_cache": True,
        }
        if settings.temperature > 0:
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
            kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        out = self.model.generate(input_ids.to(device), attention_mask=mask.to(device),
                                  pixel_values=pixel_values, **kwargs)
        texts = []
        for row in out.tolist():
            cut = next((i for i, t in enumerate(row) if t in stop), len(row))
            texts.append(self.tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
        return texts
