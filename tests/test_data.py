"""The data pipeline: record checks, image spans, truncation, preprocessing modes, collation."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from tinyllava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from tinyllava.data.dataset import Collator, expand_image_tokens, truncate
from tinyllava.data.images import expand_to_square, preprocess_image
from tinyllava.data.records import DataError, check_record, load_records

IMG = IMAGE_TOKEN_INDEX


def conv(*values):
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(values)]


@pytest.mark.parametrize(("record", "reason"), [
    ("just a string", "not an object"),
    ({"id": "a"}, "conversations: must be a non-empty list"),
    ({"id": "a", "conversations": [{"from": "human"}]}, "'from' and 'value'"),
    ({"id": "a", "conversations": [{"from": "robot", "value": "x"}]}, "conversations[0].from: 'from' is 'robot'"),
    ({"id": "a", "conversations": conv("q", "a", "q2")}, "last turn must be a gpt answer"),
    ({"id": "a", "conversations": conv("<image> q", "a")}, "no 'image' field"),
    ({"id": "a", "image": "x.png", "conversations": conv("q", "a")}, "0 <image> tags"),
    ({"id": "a", "conversations": conv("q", "a <image>")}, "appears in a gpt turn"),
])
def test_record_problems_are_named(tmp_path, record, reason):
    rid, problem = check_record(3, record, tmp_path)
    assert problem is not None and reason in problem
    assert rid == ("#3" if not isinstance(record, dict) else "a")


def test_load_records_skip_mode_counts(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    records = [
        {"id": "good", "image": "ok.png", "conversations": conv("<image>\nq", "a")},
        {"id": "text", "conversations": conv("q", "a")},
        {"id": "good", "conversations": conv("q", "a")},
        {"id": "gone", "image": "gone.png", "conversations": conv("<image>\nq", "a")},
    ]
    path = tmp_path / "d.json"
    path.write_text(json.dumps(records))
    with pytest.raises(DataError) as err:
        load_records(path, tmp_path)
    assert "2 of 4 records are bad" in str(err.value)
    assert "record good: id: duplicate id" in str(err.value) and "record gone: image" in str(err.value)
    checked = load_records(path, tmp_path, on_bad_record="skip")
    assert [r["id"] for r in checked.records] == ["good", "text"]
    assert len(checked.problems) == 2
    with pytest.raises(DataError, match="not valid JSON"):
        (tmp_path / "bad.json").write_text("{")
        load_records(tmp_path / "bad.json", tmp_path)


def test_expand_image_tokens():
    ids, labels = expand_image_tokens([1, IMG, 5, 6], [IGNORE_INDEX, IGNORE_INDEX, 5, 6], 3)
    assert ids == [1, IMG, IMG, IMG, 5, 6]
    assert labels == [IGNORE_INDEX] * 4 + [5, 6]


def test_truncation_never_cuts_inside_an_image_span():
    ids = [1, IMG, IMG, IMG, IMG, 7, 8]
    labels = [IGNORE_INDEX] * 5 + [7, 8]
    kept, lab, image_kept = truncate(ids, labels, 3)  # the cut would split the span: drop it whole
    assert kept == [1] and lab == [IGNORE_INDEX] and not image_kept
    kept, lab, image_kept = truncate(ids, labels, 6)
    assert kept == [1, IMG, IMG, IMG, IMG, 7] and image_kept
    assert truncate(ids, labels, 10) == (ids, labels, True)


def test_pad_mode_letterboxes_with_the_processor_mean():
    from transformers import CLIPImageProcessor

    proc = CLIPImageProcessor(size={"shortest_edge": 8}, crop_size={"height": 8, "width": 8},
                              image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    wide = Image.new("RGB", (16, 8), (255, 255, 255))
    square = expand_to_square(wide, (127, 127, 127))
    assert square.size == (16, 16)
    assert square.getpixel((0, 0)) == (127, 127, 127) and square.getpixel((8, 8)) == (255, 255, 255)
    padded = preprocess_image(wide, proc, "pad")
    plain = preprocess_image(wide, proc, "square")
    assert padded.shape == plain.shape == (3, 8, 8)
    assert padded[:, 0, 4].abs().max() < 0.02  # the letterbox is the mean colour, i.e. 0 after normalising
    assert plain[:, 0, 4].min() > 0.9  # square mode: the white image fills the frame
    with pytest.raises(ValueError, match="unknown image_preprocess"):
        preprocess_image(wide, proc, "stretch")


def test_collator_pads_right_and_stacks_only_real_images():
    batch = [
        {"input_ids": torch.tensor([1, IMG, 3]), "labels": torch.tensor([-100, -100, 3]),
         "pixel_values": torch.zeros(3, 4, 4)},
        {"input_ids": torch.tensor([1, 2]), "labels": torch.tensor([-100, 2])},
    ]
    out = Collator(pad_token_id=0)(batch)
    assert out["input_ids"].tolist() == [[1, IMG, 3], [1, 2, 0]]
    assert out["labels"].tolist() == [[-100, -100, 3], [-100, 2, -100]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert out["pixel_values"].shape == (1, 3, 4, 4)
    assert "pixel_values" not in Collator(0)([batch[1]])
