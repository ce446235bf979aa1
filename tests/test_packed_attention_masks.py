"""training.packed_attention builds no (T, T) mask for rows without padding: packed samples are kept apart by
their boundaries, or, when a caller gives none, by boundaries read from the position ids."""

from __future__ import annotations

import pytest
import torch

from tinyllava.training.packed_attention import varlen_attention

LENGTHS = [5, 7, 4]


@pytest.fixture(scope="module")
def llm():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=64, attn_implementation="sdpa")
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture
def mask_calls(monkeypatch):
    import transformers.masking_utils as masking

    calls = []
    original = masking.sdpa_mask

    def counting(*args, **kwargs):
        calls.append(kwargs.get("q_length"))
        return original(*args, **kwargs)

    monkeypatch.setattr(masking, "sdpa_mask", counting)
    return calls


def _samples(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 64, (1, n), generator=g) for n in LENGTHS]


def _separately(llm, samples) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([llm(input_ids=s, use_cache=False).logits for s in samples], dim=1)


def _positions(lengths) -> torch.Tensor:
    return torch.cat([torch.arange(n) for n in lengths])[None]


def test_a_packed_row_builds_no_mask_with_or_without_boundaries(llm, mask_calls):
    samples = _samples()
    expected = _separately(llm, samples)
    ids, positions = torch.cat(samples, dim=1), _positions(LENGTHS)
    bounds = torch.tensor([0, 5, 12, 16], dtype=torch.int32)
    with varlen_attention(llm), torch.no_grad():
        given = llm(input_ids=ids, position_ids=positions, cu_seq_lens_q=bounds, cu_seq_lens_k=bounds,
                    use_cache=False).logits
        read = llm(input_ids=ids, position_ids=positions, use_cache=False).logits  # boundaries from the positions
    assert mask_calls == []
    assert torch.allclose(given, expected, atol=1e-5)
    assert torch.allclose(read, expected, atol=1e-5)


def test_padded_rows_still_get_their_mask(llm, mask_calls):
    ids = torch.randint(0, 64, (2, 6))
    mask = torch.tensor([[1] * 6, [0, 0, 1, 1, 1, 1]])
    with torch.no_grad():
        plain = llm(input_ids=ids, attention_mask=mask).logits
        with varlen_attention(llm):
            switched = llm(input_ids=ids, attention_mask=mask).logits
    assert mask_calls  # the padding mask was built
    assert torch.allclose(switched[0], plain[0], atol=1e-5) and torch.allclose(switched[1, 2:], plain[1, 2:], atol=1e-5)


def test_several_packed_rows_without_boundaries_keep_their_samples_apart(llm):
    rows = [_samples(0), _samples(1)]
    expected = torch.cat([_separately(llm, r) for r in rows])
    ids = torch.cat([torch.cat(r, dim=1) for r in rows])
    positions = _positions(LENGTHS).expand(2, -1)
    with varlen_attention(llm), torch.no_grad():
        out = llm(input_ids=ids, position_ids=positions, use_cache=False).logits
    assert torch.allclose(out, expected, atol=1e-5)
