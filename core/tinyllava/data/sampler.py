"""A modality- and length-grouped order for runs that pad instead of packing.

Batches are built from samples of one modality (image or text-only, so a text-only batch never runs
the vision tower) and of similar length (little padding), and the batches are then shuffled. Each
epoch is a permutation: every sample appears exactly once.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import torch

MEGABATCH_MULT = 16  # batches per sorted window: more = less padding, less randomness


def grouped_indices(lengths: list[int], has_image: list[bool], batch_size: int, seed: int) -> list[int]:
    """One epoch's order: per modality, shuffle, cut into windows of MEGABATCH_MULT batches, sort each window by
    length (longest first) and cut it into batches; shuffle all full batches together, leftovers last."""
    rng = random.Random(seed)
    batches: list[list[int]] = []
    leftovers: list[int] = []
    for modality in (True, False):
        pool = [i for i, h in enumerate(has_image) if h == modality]
        rng.shuffle(pool)
        window = batch_size * MEGABATCH_MULT
        for start in range(0, len(pool), window):
            chunk = sorted(pool[start:start + window], key=lambda i: -lengths[i])
            for b in range(0, len(chunk), batch_size):
                batch = chunk[b:b + batch_size]
                (batches.append(batch) if len(batch) == batch_size else leftovers.extend(batch))
    rng.shuffle(batches)
    return [i for batch in batches for i in batch] + leftovers


class ModalityLengthGroupedSampler(torch.utils.data.Sampler[int]):
    """Yields grouped_indices for the current epoch (the Trainer calls set_epoch; resume replays the same order).

    `batch_size` is the number of samples per optimizer step on all processes together, so each process's
    share of a step comes from the same group.
    """

    def __init__(self, lengths: list[int], has_image: list[bool], batch_size: int, seed: int = 0) -> None:
        if len(lengths) != len(has_image):
            raise ValueError("lengths and has_image must describe the same samples")
        self.lengths = list(lengths)
        self.has_image = list(has_image)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        return iter(grouped_indices(self.lengths, self.has_image, self.batch_size, self.seed * 100003 + self.epoch))
