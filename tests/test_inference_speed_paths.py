"""The fast inference paths give the answers the plain ones give: the lean decode loop against transformers'
generate(), batched against one at a time, static against dynamic cache; a load that skips random init; images
preprocessed once."""

from __future__ import annotations

import pytest

CONVS = [
    [{"from": "human", "value": "<image>\nWhat colour is the shape?"}],
    [{"from": "human", "value": "Hi"}],
    [{"from": "human", "value": "<image>\nWhere is the red circle at the moment, and how many are there?"}],
    [{"from": "human", "value": "<image>\nShape?"}],
    [{"from": "human", "value": "Tell me a long story about squares and circles"}],
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from tinyllava.testing import save_and_reload_tiny

    folder = tmp_path_factory.mktemp("ckpt")
    built, loaded = save_and_reload_tiny(folder)
    return folder, built, loaded


@pytest.fixture(scope="module")
def pipe(saved):
    from tinyllava.inference import Pipeline

    return Pipeline(saved[2])


@pytest.fixture(scope="module")
def images():
    from PIL import Image

    return [Image.new("RGB", (32, 32), (200, 0, 0)), None, Image.new("RGB", (40, 30), (0, 90, 200)),
            Image.new("RGB", (32, 32), (0, 200, 0)), None]


def _batch(pipe, convs, images):
    import torch

    rows = pipe.encode_prompts(convs, images)
    longest = max(map(len, rows))
    pad = pipe.tokenizer.pad_token_id
    ids = torch.full((len(rows), longest), pad)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, longest - len(r):] = torch.tensor(r)
        mask[i, longest - len(r):] = 1
    present = [im for im in images if im is not None]
    return ids, mask, pipe.batch_pixel_values(present)


def test_decode_equals_transformers_generate(pipe, images):
    """Same tokens as generate(do_sample=False), stop token cut, for a left-padded batch with and without images."""
    from tinyllava.inference.decode import decode

    ids, mask, pixels = _batch(pipe, CONVS, images)
    stop = pipe.template.stop_token_ids(pipe.tokenizer)
    pad = pipe.tokenizer.pad_token_id
    reference = pipe.model.generate(ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=12, do_sample=False,
                                    eos_token_id=stop, pad_token_id=pad, temperature=None, top_p=None, top_k=None)
    expected = [row[:next((i for i, t in enumerate(row) if t in stop), len(row))] for row in reference.tolist()]
    for cache in ("dynamic", "static"):
        got = decode(pipe.model, ids, mask, pixels, max_new_tokens=12, stop_ids=stop, pad_id=pad, cache=cache)
        assert got == expected, cache


def test_stop_token_ends_a_row_and_the_loop(pipe, images):
    """A row whose first greedy token is declared a stop token answers nothing; when every row has stopped the
    loop ends (no further forward)."""
    from tinyllava.inference.decode import decode

    ids, mask, pixels = _batch(pipe, CONVS[:2], images[:2])
    pad = pipe.tokenizer.pad_token_id
    free = decode(pipe.model, ids, mask, pixels, max_new_tokens=6, stop_ids=[], pad_id=pad)
    assert all(len(r) == 6 for r in free)
    first = free[0][0]
    calls = []
    lm = pipe.model.language_model
    hook = lm.register_forward_hook(lambda *a: calls.append(1))
    try:
        got = decode(pipe.model, ids, mask, pixels, max_new_tokens=6, stop_ids=[first], pad_id=pad)
    finally:
        hook.remove()
    assert got[0] == []
    cut = next((i for i, t in enumerate(free[1]) if t == first), 6)
    assert got[1] == free[1][:cut]
    assert len(calls) == 1 + min(cut, 5)  # the prefill, then one forward per step until every row stopped


@pytest.mark.parametrize("cache", ["auto", "dynamic", "static"])
def test_batched_answers_equal_one_at_a_time(pipe, images, cache):
    from tinyllava.inference.pipeline import GenerationSettings

    settings = GenerationSettings(max_new_tokens=8, cache=cache)
    single = [pipe.answer([c], [i], settings)[0] for c, i in zip(CONVS, images, strict=True)]
    assert pipe.answer(CONVS, images, settings) == single
    assert pipe.answer(CONVS[::-1], images[::-1], settings) == single[::-1]


def test_runner_batches_equal_batch_one(pipe, images):
    """The eval runner's grouping (sorted by length, any batch size) never changes an answer."""
    from tinyllava.components.benchmark import EvalItem
    from tinyllava.eval.runner import generate_answers

    items = [EvalItem(f"q{i}", c[0]["value"].replace("<image>\n", ""), im, 6)
             for i, (c, im) in enumerate(zip(CONVS * 3, images * 3, strict=True))]
    one = generate_answers(pipe, items, 1)
    assert generate_answers(pipe, items, 4) == one
    assert generate_answers(pipe, items, 64) == one


def test_runner_keeps_each_items_own_answer_limit(pipe, images):
    """Items with different max_new_tokens in one benchmark: each answer stops at its own limit, whatever the
    batch size (a batch sharing its largest limit would let the short-limit items run on)."""
    from tinyllava.components.benchmark import EvalItem
    from tinyllava.eval.runner import answer_batches, generate_answers

    items = [EvalItem(f"q{i}", c[0]["value"].replace("<image>\n", ""), im, 1 + 5 * (i % 2))
             for i, (c, im) in enumerate(zip(CONVS * 2, images * 2, strict=True))]
    one = generate_answers(pipe, items, 1)
    assert generate_answers(pipe, items, 64) == one
    short = [one[it.item_id] for it in items if it.max_new_tokens == 1]
    long_ = [one[it.item_id] for it in items if it.max_new_tokens == 6]
    assert max(len(a) for a in long_) > max(len(a) for a in short)  # the limits really differ in the answers
    batches = answer_batches(items, list(range(len(items))), 3)
    assert all(len({items[i].max_new_tokens for i in b}) == 1 and len(b) <= 3 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(len(items)))


def test_generation_keeps_freed_memory_and_the_runner_trims_once(pipe, images, monkeypatch):
    """Every decode step runs with freed blocks kept in the process (a batch-64 prefill's activations pass glibc's
    32 MiB mmap ceiling and were faulted in afresh on every op); the eval runner holds one block over all its
    batches, so memory is trimmed back once, after the last one, not between batches."""
    from tinyllava.components.benchmark import EvalItem
    from tinyllava.eval.runner import generate_answers
    from tinyllava.training import freed_memory

    depths: list[int] = []
    pipe.generate_ids(pipe.encode_prompts(CONVS[:2], images[:2]), pipe.batch_pixel_values(images[:1]),
                      on_step=lambda step, tokens: depths.append(freed_memory._depth))
    libc = freed_memory._glibc()
    assert depths and all(d == (1 if libc is not None else 0) for d in depths)
    assert freed_memory._depth == 0
    if libc is None:
        return
    trims: list[int] = []

    class Counting:
        def __getattr__(self, name):
            if name == "malloc_trim":
                return lambda pad: trims.append(pad) or 1
            return getattr(libc, name)

    monkeypatch.setattr(freed_memory, "_glibc", lambda: Counting())
    items = [EvalItem(f"q{i}", c[0]["value"].replace("<image>\n", ""), im, 3)
             for i, (c, im) in enumerate(zip(CONVS, images, strict=True))]
    generate_answers(pipe, items, 2)  # three batches
    assert trims == [0]


def test_sampling_is_seeded_and_top_p_near_zero_is_greedy(pipe, images):
    from tinyllava.inference.pipeline import GenerationSettings

    greedy = pipe.answer(CONVS, images, GenerationSettings(max_new_tokens=6))
    hot = GenerationSettings(max_new_tokens=6, temperature=1.5, seed=3)
    assert pipe.answer(CONVS, images, hot) == pipe.answer(CONVS, images, hot)
    nucleus = GenerationSettings(max_new_tokens=6, temperature=1.5, top_p=1e-6, seed=4)
    assert pipe.answer(CONVS, images, nucleus) == greedy


def test_load_draws_no_random_initial_weights(saved, monkeypatch):
    """The skeleton is built without random init (the weights come from the file), and still loads exactly."""
    import torch

    from tinyllava.checkpoint import load_checkpoint

    folder, built, _ = saved
    draws = []
    for name in ("normal_", "uniform_"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, **kwargs):
            draws.append(tuple(self.shape))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    loaded = load_checkpoint(folder)
    monkeypatch.undo()
    assert draws == []
    torch.manual_seed(0)
    state = built.model.state_dict()
    assert state.keys() == loaded.model.state_dict().keys()
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, state[key]), key
    # random init is back to normal after the load
    assert not torch.equal(torch.nn.Linear(4, 4).weight, torch.nn.Linear(4, 4).weight)


def test_tied_head_is_tied_after_a_fast_load(saved):
    lm = saved[2].model.language_model
    assert lm.get_output_embeddings().weight.data_ptr() == lm.get_input_embeddings().weight.data_ptr()


def test_image_files_are_preprocessed_once(pipe, tmp_path, monkeypatch):
    import os

    from PIL import Image

    path = tmp_path / "a.png"
    Image.new("RGB", (32, 32), (10, 20, 30)).save(path)
    calls = []
    original = pipe.pixel_values
    monkeypatch.setattr(pipe, "pixel_values", lambda image: calls.append(image) or original(image))
    first = pipe.batch_pixel_values([path, str(path)])
    assert len(calls) == 1 and (first[0] == first[1]).all()
    Image.new("RGB", (32, 32), (250, 250, 250)).save(path)
    os.utime(path, ns=(1, 1))  # a changed file (size or modification time) is read again
    second = pipe.batch_pixel_values([path])
    assert len(calls) == 2 and not (second[0] == first[0]).all()


def test_uncached_images_are_preprocessed_on_a_thread_pool_in_order(pipe, tmp_path, monkeypatch):
    import threading

    import torch
    from PIL import Image

    paths = []
    for n in range(5):
        paths.append(tmp_path / f"{n}.png")
        Image.new("RGB", (32, 32), (40 * n, 10, 200 - 30 * n)).save(paths[-1])
    threads = set()
    original = pipe.pixel_values
    monkeypatch.setattr(pipe, "pixel_values", lambda image: threads.add(threading.current_thread().name)
                        or original(image))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    batch = pipe.batch_pixel_values([*paths, paths[1], Image.open(paths[3])])
    assert all(name.startswith("tinyllava-images") for name in threads) and threads
    for row, image in zip(batch, [*paths, paths[1], paths[3]], strict=True):
        assert torch.equal(row, original(image).to(row.dtype))


def test_shared_prompt_start_runs_once_and_changes_nothing(pipe, images):
    """The system prompt every row starts with is run once (batch 1) and its keys/values reused by every row and
    every later call; the answers are those of the plain path."""
    from tinyllava.inference.decode import decode

    ids, mask, pixels = _batch(pipe, CONVS, images)
    stop = pipe.template.stop_token_ids(pipe.tokenizer)
    pad = pipe.tokenizer.pad_token_id
    plain = decode(pipe.model, ids, mask, pixels, max_new_tokens=8, stop_ids=stop, pad_id=pad)
    lengths = []
    hook = pipe.model.language_model.register_forward_hook(
        lambda module, args, kwargs, out: lengths.append(kwargs["inputs_embeds"].shape[1])
        if kwargs.get("inputs_embeds") is not None else None, with_kwargs=True)
    store: dict = {}
    try:
        for cache in ("dynamic", "static"):
            got = decode(pipe.model, ids, mask, pixels, max_new_tokens=8, stop_ids=stop, pad_id=pad, cache=cache,
                         shared_prefix=pipe.template_prefix, prefix_store=store)
            assert got == plain, cache
    finally:
        hook.remove()
    shared = lengths[0]
    assert shared == len(pipe.template_prefix) >= 4 and len(store) == 1
    assert lengths == [shared, ids.shape[1] - shared, ids.shape[1] - shared]  # the prefix once, then only the rest
    single = [decode(pipe.model, ids[i:i + 1, ids.shape[1] - int(mask[i].sum()):], mask[i:i + 1, ids.shape[1]
                     - int(mask[i].sum()):], None if images[i] is None else pipe.batch_pixel_values([images[i]]),
                     max_new_tokens=8, stop_ids=stop, pad_id=pad, shared_prefix=pipe.template_prefix,
                     prefix_store=store)[0] for i in range(len(CONVS))]
    assert single == plain and len(store) == 1


SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
         "num_key_value_heads": 1}
FAMILIES = {
    "phi3": {"name": "phi", "config": {"model_type": "phi3", **SMALL}, "tokenizer_vocab_size": 300},
    "qwen3": {"name": "qwen", "config": {"model_type": "qwen3", "head_dim": 16, **SMALL}, "tokenizer_vocab_size": 300},
    # a sliding window shorter than the prompts: no shared prefix there (padding would eat into the window)
    "gemma2": {"name": "gemma", "config": {"model_type": "gemma2", **SMALL, "head_dim": 16, "sliding_window": 8},
               "tokenizer_vocab_size": 300},
    "openelm": {"name": "openelm", "config": {
        "model_dim": 32, "head_dim": 8, "num_transformer_layers": 2, "num_gqa_groups": 2,
        "qkv_multipliers": [0.5, 1.0], "ffn_multipliers": [0.5, 4.0], "ffn_dim_divisor": 16,
        "share_input_output_layers": True}, "tokenizer_vocab_size": 300},
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_llm_family_answers_alike_batched_single_and_through_generate(family, images, tmp_path):
    from tinyllava.inference import Pipeline
    from tinyllava.inference.decode import _full_attention_only
    from tinyllava.inference.pipeline import GenerationSettings
    from tinyllava.testing import save_and_reload_tiny

    _, loaded = save_and_reload_tiny(tmp_path, llm=FAMILIES[family])
    pipe = Pipeline(loaded)
    assert _full_attention_only(pipe.model.language_model) == (family != "gemma2")
    settings = GenerationSettings(max_new_tokens=6)
    batched = pipe.answer(CONVS, images, settings)
    assert batched == [pipe.answer([c], [i], settings)[0] for c, i in zip(CONVS, images, strict=True)]
    ids, mask, pixels = _batch(pipe, CONVS, images)
    stop = pipe.template.stop_token_ids(pipe.tokenizer)
    reference = pipe.model.generate(ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=6, do_sample=False,
                                    eos_token_id=stop, pad_token_id=pipe.tokenizer.pad_token_id, temperature=None,
                                    top_p=None, top_k=None)
    rows = [row[:next((i for i, t in enumerate(row) if t in stop), len(row))] for row in reference.tolist()]
    assert batched == [t.strip() for t in pipe.tokenizer.batch_decode(rows, skip_special_tokens=True)]


def test_prefill_runs_the_last_layer_blocks_at_the_last_position_only(pipe, images):
    """The prefill's last decoder layer feeds only the last position's logits: its feed-forward block and attention
    output see one row per prompt (the answers are those of generate(), tested above)."""
    from tinyllava.inference.decode import decode
    from tinyllava.model.supervised_loss import last_layer_row_modules

    ids, mask, pixels = _batch(pipe, CONVS, images)
    blocks = last_layer_row_modules(pipe.model.language_model)
    assert len(blocks) == 2
    seen: list[int] = []
    handles = [b.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[:-1].numel())) for b in blocks]
    try:
        decode(pipe.model, ids, mask, pixels, max_new_tokens=3, stop_ids=[], pad_id=pipe.tokenizer.pad_token_id)
    finally:
        for handle in handles:
            handle.remove()
    assert seen == [len(CONVS)] * 2 * 3  # prefill, then two steps of one new token per row
