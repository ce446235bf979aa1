"""Multimodal sequence packing: the samples of one step share rows instead of each padding to the longest.

A packed row holds several samples back to back. Position ids restart at 0 for each sample and the
batch carries no 2-D attention mask, so transformers' mask builder (`find_packed_sequence_indices`)
makes attention block-diagonal: no token ever sees another sample (it does so only without a KV
cache, so a packed batch also says `use_cache=False`). The flash-attention path reads
the same position ids as variable-length sequences (it needs everything in one row). The first label
of every sample is ignored, so a sample's first token is never predicted from the previous sample's
last one: per-sample losses and gradients are those of the unpacked batch.

With variable-length attention (flash attention on CUDA, training.packed_attention elsewhere) a step's
samples all share one row and attention runs per sample; otherwise rows are at most as long as the
step's longest sample, because a dense masked attention costs the row's length squared.
"""

from __future__ import annotations


def plan_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """Group sample indices into rows of at most `capacity` positions (first fit, longest first).

    A sample longer than `capacity` gets a row of its own. Within a row, samples keep their batch order.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = lengths[i]
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(capacity - n)
    return [sorted(row) for row in rows]


def row_capacity(lengths: list[int], pack_length: int | None, varlen: bool) -> int:
    """How long a packed row may be.

    varlen (variable-length attention, whose cost does not grow with the row): every sample in one row.
    Otherwise attention is a dense masked product whose cost grows with the square of the row length, so by
    default (pack_length None) rows are as long as the batch's longest sample: never longer than the unpacked
    batch, only fewer of them. An explicit pack_length is a fixed cap (a longer sample still fits alone).
    """
    if varlen:
        return sum(lengths)
    longest = max(lengths)
    return longest if pack_length is None else max(pack_length, 1)
