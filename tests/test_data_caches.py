"""Data-path caches: token arrays keyed by content, image checks by size/mtime, frozen-tower features; the
modality/length-grouped sampler."""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from tinyllava.data import token_cache
from tinyllava.data.dataset import Collator, SupervisedDataset
from tinyllava.data.feature_cache import FeatureCache, FeatureResolver, tower_fingerprint
from tinyllava.data.image_index import ImageIndex
from tinyllava.data.records import load_records
from tinyllava.data.sampler import ModalityLengthGroupedSampler, grouped_indices
from tinyllava.model.build import build_fresh
from tinyllava.plugins.registry import get_registry
from tinyllava.spec.runspec import ModelSpec
from tinyllava.testing import TINY_MODEL


def conv(question: str, answer: str, image: bool) -> list[dict]:
    return [{"from": "human", "value": ("<image>\n" if image else "") + question}, {"from": "gpt", "value": answer}]


@pytest.fixture(scope="module")
def assembled():
    torch.manual_seed(0)
    return build_fresh(get_registry(), ModelSpec.model_validate(copy.deepcopy(TINY_MODEL)))


@pytest.fixture
def data_dir(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    for n, colour in enumerate(colours):
        Image.new("RGB", (32, 32), colour).save(tmp_path / f"img{n}.png")
    records = [{"id": f"i{n}", "image": f"img{n}.png", "conversations": conv("What colour?", f"colour {n}", True)}
               for n in range(3)]
    records.append({"id": "t0", "conversations": conv("Say hello", "hello there", False)})
    (tmp_path / "data.json").write_text(json.dumps(records))
    return tmp_path


def dataset(assembled, records, data_dir, cache_dir, *, template_options=None, max_length=128, seq_len=None):
    template = get_registry().create("chat_template", "llama", template_options or {})
    return SupervisedDataset(
        records, data_dir, template, assembled.tokenizer, assembled.image_processor,
        seq_len or assembled.model.config.image_seq_len, max_length, "square",
        template_spec={"name": "llama", "options": template_options or {}}, token_cache_dir=cache_dir,
    )


# -- token cache ----------------------------------------------------------------------------------


def test_token_cache_is_reused_and_matches_a_fresh_tokenisation(assembled, data_dir, tmp_path):
    records = load_records(data_dir / "data.json", data_dir).records
    cache = tmp_path / "tokens"
    first = dataset(assembled, records, data_dir, cache)
    second = dataset(assembled, records, data_dir, cache)
    plain = dataset(assembled, records, data_dir, None)
    assert not first.data.from_cache and second.data.from_cache and len(os.listdir(cache)) == 1
    assert second.data.ids.dtype == np.int32
    for a, b in ((second, plain), (first, plain)):
        assert a.images == b.images and a.lengths == b.lengths
        for i in range(len(a)):
            assert torch.equal(a[i]["input_ids"], b[i]["input_ids"]) and torch.equal(a[i]["labels"], b[i]["labels"])
    # the collator's expansion gives the lengths the packer plans with
    batch = Collator(0, image_seq_len=assembled.model.config.image_seq_len)([second[0]])
    assert batch["input_ids"].shape[1] == second.lengths[0]


def test_a_changed_record_template_or_setting_invalidates_the_token_cache(assembled, data_dir, tmp_path):
    records = load_records(data_dir / "data.json", data_dir).records
    cache = tmp_path / "tokens"
    dataset(assembled, records, data_dir, cache)
    changed = copy.deepcopy(records)
    changed[0]["conversations"][1]["value"] = "colour zero, changed"
    assert not dataset(assembled, changed, data_dir, cache).data.from_cache
    last = {"image_placement": "last"}
    assert not dataset(assembled, records, data_dir, cache, template_options=last).data.from_cache
    assert not dataset(assembled, records, data_dir, cache, max_length=40).data.from_cache
    assert not dataset(assembled, records, data_dir, cache, seq_len=4).data.from_cache
    assert len(os.listdir(cache)) == 5
    assert dataset(assembled, changed, data_dir, cache).data.from_cache  # each entry is reused


def test_tokenizer_fingerprint_survives_a_save_and_reload_but_not_a_vocab_change(assembled, tmp_path):
    from transformers import AutoTokenizer

    tok = assembled.tokenizer
    tok.save_pretrained(tmp_path / "tok")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert token_cache.tokenizer_fingerprint(reloaded) == token_cache.tokenizer_fingerprint(tok)
    reloaded.add_tokens(["<new_token>"])
    assert token_cache.tokenizer_fingerprint(reloaded) != token_cache.tokenizer_fingerprint(tok)


def test_compact_truncation_matches_the_expanded_rule():
    from tinyllava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
    from tinyllava.data.dataset import expand_image_tokens, truncate

    ids = [1, 2, IMAGE_TOKEN_INDEX, 5, 6, 7]
    labels = [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 5, 6, 7]
    for max_length in range(1, 12):
        c_ids, c_labels, used, full = token_cache._truncate_compact(ids, labels, 4, max_length)
        e_ids, e_labels = expand_image_tokens(ids, labels, 4)
        t_ids, t_labels, _ = truncate(e_ids, e_labels, max_length)
        assert expand_image_tokens(c_ids, c_labels, 4) == (t_ids, t_labels)
        assert used == len(t_ids) and full == len(e_ids)


# -- image index ----------------------------------------------------------------------------------


def test_image_checks_are_remembered_until_the_file_changes(data_dir, tmp_path):
    index_file = tmp_path / "images.json"
    first = ImageIndex(index_file)
    load_records(data_dir / "data.json", data_dir, images=first)
    assert first.opened == 3
    again = ImageIndex(index_file)
    load_records(data_dir / "data.json", data_dir, images=again)
    assert again.opened == 0  # nothing re-opened
    digest = again.digest(data_dir / "img1.png")
    (data_dir / "img1.png").write_bytes(b"not a png any more")
    third = ImageIndex(index_file)
    checked = load_records(data_dir / "data.json", data_dir, on_bad_record="skip", images=third)
    assert third.opened == 1 and [p.record_id for p in checked.problems] == ["i1"]
    assert "unreadable" in checked.problems[0].reason
    assert third.digest(data_dir / "img1.png") != digest


def test_new_images_are_checked_on_a_thread_pool_with_the_sequential_results(data_dir, tmp_path, monkeypatch):
    """load_records checks the images the index does not know on several threads, up front; each entry (problem,
    digest, size) is what checking that file alone gives, and a bad or missing file is still reported by record."""
    import threading

    from tinyllava.data import image_index

    (data_dir / "img1.png").write_bytes(b"not a png")
    records = json.loads((data_dir / "data.json").read_text())
    records.append({"id": "gone", "image": "missing.png", "conversations": conv("What colour?", "none", True)})
    records.append({"id": "i0again", "image": "img0.png", "conversations": conv("Colour?", "colour 0", True)})
    (data_dir / "data.json").write_text(json.dumps(records))
    threads: set[str] = set()
    real = image_index._examine

    def examine(path, st):
        threads.add(threading.current_thread().name)
        return real(path, st)

    monkeypatch.setattr(image_index, "_examine", examine)
    parallel = ImageIndex(tmp_path / "p.json")
    checked = load_records(data_dir / "data.json", data_dir, on_bad_record="skip", images=parallel)
    assert parallel.opened == 3 and threads and all(t.startswith("image-check") for t in threads)
    assert sorted((p.record_id, p.reason.split(" (")[0]) for p in checked.problems) == [
        ("gone", f"image: image {data_dir / 'missing.png'} does not exist"),
        ("i1", f"image: image {data_dir / 'img1.png'} is unreadable")]
    assert not any("object at 0x" in p.reason for p in checked.problems)  # no in-memory object in a message
    one_by_one = ImageIndex()
    for name in ("img0.png", "img1.png", "img2.png"):
        one_by_one.problem(data_dir / name)
    assert parallel.entries == one_by_one.entries


# -- feature cache --------------------------------------------------------------------------------


def _cached_dataset(assembled, data_dir, cache_root, fingerprint):
    checked_index = ImageIndex()
    records = load_records(data_dir / "data.json", data_dir, images=checked_index).records
    ds = dataset(assembled, records, data_dir, None)
    cache = FeatureCache(cache_root, fingerprint)
    keys = [checked_index.digest(data_dir / im) if im else None for im in ds.images]
    ds.use_feature_cache(cache, keys)
    return ds, cache


def test_cached_features_give_the_same_loss_and_skip_the_tower(assembled, data_dir, tmp_path):
    model = assembled.model.train()
    for p in model.vision_tower.parameters():
        p.requires_grad_(False)
    seq_len = model.config.image_seq_len
    records = load_records(data_dir / "data.json", data_dir).records
    plain = dataset(assembled, records, data_dir, None)
    collate = Collator(assembled.tokenizer.pad_token_id, image_seq_len=seq_len, pack=True)
    reference = model(**collate([plain[i] for i in range(len(plain))])).loss

    fingerprint = tower_fingerprint(model, assembled.image_processor, "square", "none")
    calls = []
    handle = model.vision_tower.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        for epoch in range(2):
            ds, cache = _cached_dataset(assembled, data_dir, tmp_path / "features", fingerprint)
            resolver = FeatureResolver(cache)
            batch = collate([ds[i] for i in range(len(ds))])
            assert ("pixel_values" in batch) == (epoch == 0)  # second epoch: no image is even opened
            loss = model(**resolver(batch, model)).loss
            torch.testing.assert_close(loss, reference, rtol=0, atol=0)
            assert resolver.encoded == (3 if epoch == 0 else 0)
    finally:
        handle.remove()
    assert calls == [3]  # the tower ran once, in the first epoch, on the three images


def test_a_changed_tower_weight_or_preprocessing_changes_the_feature_key(assembled):
    model, proc = assembled.model, assembled.image_processor
    base = tower_fingerprint(model, proc, "square", "none")
    assert tower_fingerprint(model, proc, "square", "none") == base
    assert tower_fingerprint(model, proc, "pad", "none") != base
    assert tower_fingerprint(model, proc, "square", "bfloat16") != base
    other = copy.deepcopy(proc)
    other.image_mean = [0.1, 0.2, 0.3]
    assert tower_fingerprint(model, other, "square", "none") != base
    changed = copy.deepcopy(model)
    with torch.no_grad():
        next(changed.vision_tower.parameters()).view(-1)[0] += 1e-3
    assert tower_fingerprint(changed, proc, "square", "none") != base
    layer = copy.deepcopy(model)
    layer.config.components["vision_tower"] = {**layer.config.components["vision_tower"], "feature_layer": -1}
    assert tower_fingerprint(layer, proc, "square", "none") != base


# -- sampler --------------------------------------------------------------------------------------


def test_grouped_sampler_yields_every_sample_once_per_epoch_in_single_modality_batches():
    rng = np.random.default_rng(0)
    n, batch = 203, 8
    lengths = rng.integers(10, 500, n).tolist()
    has_image = (rng.random(n) < 0.8).tolist()
    sampler = ModalityLengthGroupedSampler(lengths, has_image, batch, seed=3)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert sorted(order) == list(range(n))
        orders.append(order)
        full = sum(has_image) // batch + (n - sum(has_image)) // batch
        for b in range(full):
            group = order[b * batch:(b + 1) * batch]
            assert len({has_image[i] for i in group}) == 1
    assert orders[0] != orders[1]
    sampler.set_epoch(0)
    assert list(sampler) == orders[0]  # the same epoch replays the same order (resume)

    def padding(order: list[int]) -> int:
        return sum(max(lengths[i] for i in order[b:b + batch]) * len(order[b:b + batch])
                   - sum(lengths[i] for i in order[b:b + batch]) for b in range(0, n, batch))

    shuffled = rng.permutation(n).tolist()
    assert padding(grouped_indices(lengths, has_image, batch, 0)) < padding(shuffled) / 3


# -- the runner -----------------------------------------------------------------------------------


def _run(tmp_path, name, **stage_fields):
    from tinyllava.spec.runspec import resolve_spec
    from tinyllava.testing import tiny_run_spec
    from tinyllava.training.runner import run_training

    raw = tiny_run_spec(tmp_path / "runs", name=name, steps=2, num_images=12)
    raw["stages"] = raw["stages"][1:]  # the instruct stage
    raw["stages"][0].update(stage_fields)
    return run_training(resolve_spec(raw)).stages[0]


def test_packing_and_feature_cache_train_like_the_plain_path(tmp_path):
    plain = _run(tmp_path, "plain", packing=False, feature_cache=False)
    fast = _run(tmp_path, "fast", packing=True, feature_cache=True)  # fills the feature cache
    again = _run(tmp_path, "again", packing=True, feature_cache=True)  # reads it
    assert fast.train_loss == pytest.approx(plain.train_loss, rel=1e-5)
    assert again.train_loss == pytest.approx(plain.train_loss, rel=1e-5)
    cache = tmp_path / "runs" / ".cache"
    assert len(list((cache / "features").rglob("*.safetensors"))) > 0
    assert len(list((cache / "tokens").iterdir())) == 1  # one tokenisation, reused by the later runs
    assert (cache / "images.json").is_file()


def test_stage_data_fields_are_validated():
    from tinyllava.spec.runspec import StageSpec

    stage = StageSpec(name="s")
    assert stage.packing and stage.feature_cache and not stage.group_by_length and stage.dataloader_workers is None
    with pytest.raises(ValueError, match="dataloader_workers"):
        StageSpec(name="s", dataloader_workers=-1)
    with pytest.raises(ValueError, match="pack_length"):
        StageSpec(name="s", pack_length=2)
    with pytest.raises(ValueError, match="packing_rows"):
        StageSpec(name="s", packing_rows=2)  # unknown fields are refused


def test_group_by_length_stage_draws_batches_from_the_grouped_sampler(tmp_path, monkeypatch):
    drawn = []
    original = ModalityLengthGroupedSampler.__iter__

    def spy(self):
        order = list(original(self))
        drawn.append(order)
        return iter(order)

    monkeypatch.setattr(ModalityLengthGroupedSampler, "__iter__", spy)
    result = _run(tmp_path, "grouped", packing=False, group_by_length=True)
    assert result.steps == 2 and result.train_loss == result.train_loss  # trained, loss not NaN
    assert drawn and sorted(drawn[0]) == list(range(len(drawn[0])))


def test_default_dataloader_workers_only_on_cuda(monkeypatch):
    from tinyllava.spec.runspec import StageSpec
    from tinyllava.training.runner import dataloader_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert dataloader_workers(StageSpec(name="s"), use_cuda=False) == 0  # the CPU computes: no worker
    assert dataloader_workers(StageSpec(name="s"), use_cuda=True) == 4
    assert dataloader_workers(StageSpec(name="s"), use_cuda=True, world_size=8) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(2)), raising=False)
    assert dataloader_workers(StageSpec(name="s"), use_cuda=True, world_size=2) == 0
    assert dataloader_workers(StageSpec(name="s", dataloader_workers=2), use_cuda=False) == 2
