"""Torch dataset and collator for supervised (instruction or caption) training."""

from __future__ import annotations

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


class SupervisedDataset(torch.utils.data.Dataset):
    """Tokenises every record up front (so template problems surface before training).

    Samples are kept compact (one IMAGE_TOKEN_INDEX per image, int32 arrays, see token_cache); give the
    Collator `image_seq_len` to expand them. With `token_cache_dir` the arrays are reused across stages and
    restarts. With a `feature_cache` (frozen tower), an image whose features are cached is served as
    `image_features` instead of being opened and preprocessed.
    """

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
        *,
        template_spec: dict[str, Any] | None = None,
        token_cache_dir: Path | None = None,
    ) -> None:
        from tinyllava.data.token_cache import load_or_tokenize

        self.image_root = image_root
        self.image_processor = image_processor
        self.image_preprocess = image_preprocess
        self.image_seq_len = image_seq_len
        spec = template_spec or {"name": type(template).__qualname__}
        self.data = load_or_tokenize(records, template, spec, tokenizer, image_seq_len, max_length,
                                     token_cache_dir)
        self.truncated = self.data.truncated
        self.untrainable = list(self.data.untrainable)
        self.images: list[str | None] = [
            records[int(r)].get("image") if has else None
            for r, has in zip(self.data.record_index, self.data.has_image, strict=True)
        ]
        self.lengths: list[int] = [int(n) for n in self.data.lengths]
        self.feature_cache: Any = None
        self.image_keys: list[str | None] = [None] * len(self.images)

    def use_feature_cache(self, cache: Any, image_keys: list[str | None]) -> None:
        """Serve cached tower features (and every image's key) from now on; see feature_cache."""
        self.feature_cache = cache
        self.image_keys = image_keys

    def has_image(self, index: int) -> bool:
        return self.images[index] is not None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        a, b = int(self.data.offsets[index]), int(self.data.offsets[index + 1])
        item: dict[str, Any] = {
            "input_ids": torch.from_numpy(self.data.ids[a:b].astype("int64")),
            "labels": torch.from_numpy(self.data.labels[a:b].astype("int64")),
        }
        image = self.images[index]
        if image is None:
            return item
        key = self.image_keys[index]
        if self.feature_cache is not None and key is not None:
            item["image_key"] = key
            features = self.feature_cache.get(key)
            if features is not None:
                item["image_features"] = features
                return item
        root = self.image_root or Path(".")
        try:
            item["pixel_values"] = preprocess_image(open_image(root / image), self.image_processor,
                                                    self.image_preprocess)
        except Exception as exc:  # noqa: BLE001 - checked before training: the file changed since
            from tinyllava.data.records import DataError

            raise DataError(f"image {root / image} could not be read during training ({type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:200]}); it changed after the data check? Fix it and "
                            f"run again with --resume") from None
        return item


def expand_compact(ids: torch.Tensor, labels: torch.Tensor, image_seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tensor form of expand_image_tokens: each IMAGE_TOKEN_INDEX becomes image_seq_len untrained positions."""
    is_image = ids == IMAGE_TOKEN_INDEX
    if not bool(is_image.any()):
        return ids, labels
    repeats = torch.where(is_image, image_seq_len, 1)
    ids = ids.repeat_interleave(repeats)
    labels = labels.repeat_interleave(repeats).masked_fill(ids == IMAGE_TOKEN_INDEX, IGNORE_INDEX)
    return ids, labels


class Collator:
    """Builds a batch: right-pads ids (pad id) and labels (IGNORE_INDEX), or packs (see packing).

    Packing with `varlen` puts the whole batch in one row and adds the samples' boundaries (`cu_seq_lens_q`, ...)
    for variable-length attention (flash attention, or training.packed_attention); without it rows hold at most
    `pack_length` positions (default: the longest sample) under a dense block-diagonal mask.

    `image_seq_len` expands compact samples (one IMAGE_TOKEN_INDEX per image); without it the ids are taken
    as already expanded. Images are stacked in the order their positions appear in the batch (row by row),
    the order in which the model splices them. With a feature cache, items carry `image_key` and either
    `image_features` or `pixel_values`; the batch then holds `image_keys`, `cached_features` (one entry per
    image, None where the tower still has to run) and `pixel_values` of the missing ones only, which the
    trainer's feature resolver turns into `image_features`.
    """

    def __init__(self, pad_token_id: int, padding_side: str = "right", *, image_seq_len: int | None = None,
                 pack: bool = False, pack_length: int | None = None, varlen: bool = False,
                 width_multiple: int = 1) -> None:
        self.pad_token_id = pad_token_id
        self.width_multiple = width_multiple  # rows padded to a multiple of this (see supervised_loss.padded_rows)
        self.padding_side = padding_side
        self.image_seq_len = image_seq_len
        self.pack = pack
        self.pack_length = pack_length
        self.varlen = varlen

    def _sequences(self, batch: list[dict[str, Any]]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        out = []
        for item in batch:
            ids, labels = item["input_ids"], item.get("labels")
            if self.image_seq_len is not None:
                if labels is None:
                    labels = torch.full_like(ids, IGNORE_INDEX)
                ids, labels = expand_compact(ids, labels, self.image_seq_len)
            out.append((ids, labels))
        return out

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        seqs = self._sequences(batch)
        if self.pack:
            out, order = self._packed(seqs)
        else:
            out, order = self._padded(seqs), list(range(len(batch)))
        out.update(self._images([batch[i] for i in order]))
        return out

    def _padded(self, seqs: list[tuple[torch.Tensor, torch.Tensor | None]]) -> dict[str, Any]:
        longest = self._rounded(max(len(ids) for ids, _ in seqs))
        ids_out = torch.full((len(seqs), longest), self.pad_token_id, dtype=torch.long)
        labels_out = torch.full((len(seqs), longest), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(seqs), longest), dtype=torch.long)
        for row, (ids, labels) in enumerate(seqs):
            n = len(ids)
            sl = slice(longest - n, longest) if self.padding_side == "left" else slice(0, n)
            ids_out[row, sl] = ids
            if labels is not None:
                labels_out[row, sl] = labels
            mask[row, sl] = 1
        return {"input_ids": ids_out, "attention_mask": mask, "labels": labels_out}

    def _packed(self, seqs: list[tuple[torch.Tensor, torch.Tensor | None]]) -> tuple[dict[str, Any], list[int]]:
        from tinyllava.data.packing import plan_rows, row_capacity

        lengths = [len(ids) for ids, _ in seqs]
        rows = plan_rows(lengths, row_capacity(lengths, self.pack_length, self.varlen))
        width = self._rounded(max(sum(lengths[i] for i in row) for row in rows))
        ids_out = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels_out = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            at = 0
            for i in row:
                ids, labels = seqs[i]
                n = len(ids)
                ids_out[r, at:at + n] = ids
                if labels is not None:
                    labels_out[r, at:at + n] = labels
                    labels_out[r, at] = IGNORE_INDEX  # never predicted from the previous sample's last token
                positions[r, at:at + n] = torch.arange(n)
                at += n
            positions[r, at:] = torch.arange(width - at)  # the padding tail is a block of its own
        order = [i for row in rows for i in row]
        # no KV cache: transformers only reads packed position ids as separate sequences when there is none
        out = {"input_ids": ids_out, "labels": labels_out, "position_ids": positions, "use_cache": False}
        if self.varlen:  # one row: the samples' boundaries, for variable-length attention
            bounds = torch.tensor([0, *torch.tensor([lengths[i] for i in order]).cumsum(0).tolist()],
                                  dtype=torch.int32)
            longest = max(lengths)
            out.update(cu_seq_lens_q=bounds, cu_seq_lens_k=bounds, max_length_q=longest, max_length_k=longest)
        return out, order

    def _rounded(self, width: int) -> int:
        return width + (-width % self.width_multiple)

    @staticmethod
    def _images(items: list[dict[str, Any]]) -> dict[str, Any]:
        with_image = [it for it in items if it.get("pixel_values") is not None or it.get("image_features") is not None]
        if not with_image:
            return {}
        if any("image_key" in it for it in with_image):
            out: dict[str, Any] = {
                "image_keys": [it["image_key"] for it in with_image],
                "cached_features": [it.get("image_features") for it in with_image],
            }
            missing = [it["pixel_values"] for it in with_image if it.get("image_features") is None]
            if missing:
                out["pixel_values"] = torch.stack(missing)
            return out
        if all(it.get("image_features") is not None for it in with_image):
            return {"image_features": torch.stack([it["image_features"] for it in with_image])}
        return {"pixel_values": torch.stack([it["pixel_values"] for it in with_image])}
