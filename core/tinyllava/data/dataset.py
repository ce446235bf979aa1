"""Torch dataset and collator for supervised (instruction or caption) training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tinyllava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from tinyllava.data.images import open_image, preprocess_image


def expand_image_tokens(ids: list[int], labels: list[int], image_seq_len: int) -> tuple[list[int], list[int]]:
    """Each IMAGE_TOKEN_INDEX becomes image_seq_len positions (never trained)."""
    out_ids: list[int] = []
    out_labels: list[int] = []
    for tok, lab in zip(ids, labels, strict=True):
        if tok == IMAGE_TOKEN_INDEX:
            out_ids += [IMAGE_TOKEN_INDEX] * image_seq_len
            out_labels += [IGNORE_INDEX] * image_seq_len
        else:
            out_ids.append(tok)
            out_labels.append(lab)
    return out_ids, out_labels


def truncate(ids: list[int], labels: list[int], max_length: int) -> tuple[list[int], list[int], bool]:
    """Cut to max_length, never inside an image span (a cut span is removed whole).

    Returns (ids, labels, image_kept).
    """
    if len(ids) <= max_length:
        return ids, labels, True
    cut = max_length
    if ids[cut - 1] == IMAGE_TOKEN_INDEX and ids[cut] == IMAGE_TOKEN_INDEX:
        while cut > 0 and ids[cut - 1] == IMAGE_TOKEN_INDEX:
            cut -= 1
    kept = ids[:cut]
    return kept, labels[:cut], IMAGE_TOKEN_INDEX in kept


@dataclass
class EncodedSample:
    input_ids: list[int]
    labels: list[int]
    image: str | None


class SupervisedDataset(torch.utils.data.Dataset):
    """Tokenises every record up front (so template problems surface before training)."""

    def __init__(
        self,
        records: list[dict[str, Any]],
        image_root: Path | None,
        template: Any,
        tokenizer: Any,
        image_processor: Any,
        image_seq_len: int,
        max_length: int,
        image_preprocess: str,
    ) -> None:
        self.image_root = image_root
        self.image_processor = image_processor
        self.image_preprocess = image_preprocess
        self.samples: list[EncodedSample] = []
        self.truncated = 0
        self.untrainable: list[str] = []
        for record in records:
            rid = str(record.get("id"))
            try:
                enc = template.encode(record["conversations"], tokenizer)
            except ValueError as exc:
                raise ValueError(f"record {rid}: {exc}") from None
            ids, labels = expand_image_tokens(enc.input_ids, enc.labels, image_seq_len)
            full_length = len(ids)
            ids, labels, image_kept = truncate(ids, labels, max_length)
            self.truncated += len(ids) < full_length
            if all(lab == IGNORE_INDEX for lab in labels):
                self.untrainable.append(rid)
                continue
            image = record.get("image") if image_kept else None
            self.samples.append(EncodedSample(ids, labels, image))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        item: dict[str, Any] = {
            "input_ids": torch.tensor(sample.input_ids, dtype=torch.long),
            "labels": torch.tensor(sample.labels, dtype=torch.long),
        }
        if sample.image is not None:
            root = self.image_root or Path(".")
            item["pixel_values"] = preprocess_image(
                open_image(root / sample.image), self.image_processor, self.image_preprocess
            )
        return item


class Collator:
    """Right-pads ids (pad id) and labels (IGNORE_INDEX); stacks images of the samples that have one."""

    def __init__(self, pad_token_id: int, padding_side: str = "right") -> None:
        self.pad_token_id = pad_token_id
        self.padding_side = padding_side

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        longest = max(len(item["input_ids"]) for item in batch)
        ids = torch.full((len(batch), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), longest), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, item in enumerate(batch):
            n = len(item["input_ids"])
            sl = slice(longest - n, longest) if self.padding_side == "left" else slice(0, n)
            ids[row, sl] = item["input_ids"]
            if "labels" in item:
                labels[row, sl] = item["labels"]
            mask[row, sl] = 1
        out: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        images = [item["pixel_values"] for item in batch if item.get("pixel_values") is not None]
        if images:
            out["pixel_values"] = torch.stack(images)
        return out
