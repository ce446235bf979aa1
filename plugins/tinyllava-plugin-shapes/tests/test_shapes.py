"""The shapes dataset and benchmark through the public plugin path."""

from __future__ import annotations

import json

import pytest
from tinyllava_plugin_shapes.scenes import POSITIONS

from tinyllava.data.records import load_records
from tinyllava.plugins.registry import get_registry


def dataset(**options):
    return get_registry().create("dataset", "shapes", {"num_images": 30, "image_size": 32, **options})


def test_materialize_is_deterministic_valid_llava_data(tmp_path):
    json_a, images_a = dataset(split="instruct", text_only_fraction=0.2).materialize(tmp_path / "a")
    json_b, _ = dataset(split="instruct", text_only_fraction=0.2).materialize(tmp_path / "b")
    assert json_a.read_text() == json_b.read_text()
    checked = load_records(json_a, images_a)  # every record passes the core's checks
    assert not checked.problems and len(checked.records) == 30
    records = json.loads(json_a.read_text())
    assert any("image" not in r for r in records)  # some text-only samples
    assert any(len(r["conversations"]) > 2 for r in records)  # multi-turn
    first = next(r for r in records if "image" in r)
    assert (images_a / first["image"]).is_file()


def test_materialize_reuses_the_cache(tmp_path):
    json_path, _ = dataset(split="captions").materialize(tmp_path)
    stamp = json_path.stat().st_mtime_ns
    again, _ = dataset(split="captions").materialize(tmp_path)
    assert again == json_path and again.stat().st_mtime_ns == stamp
    other, _ = dataset(split="captions", seed=1).materialize(tmp_path)
    assert other != json_path


def test_captions_describe_every_object(tmp_path):
    json_path, _ = dataset(split="captions").materialize(tmp_path)
    styles = set()
    for record in json.loads(json_path.read_text()):
        answer = record["conversations"][1]["value"]
        assert answer.endswith(".") and answer.lower().count("at the ") >= 1
        styles.add(answer.startswith("At the "))
    assert styles == {True, False}  # both position-first and attribute-first captions


def test_caption_styles():
    from tinyllava_plugin_shapes.scenes import Scene, Thing, caption

    scene = Scene((Thing("red", "circle", "top left", 16, 16, 20), Thing("blue", "square", "bottom right", 48, 48, 20)),
                  64)
    assert caption(scene) == "A red circle at the top left and a blue square at the bottom right."
    expected = "At the top left, a red circle and at the bottom right, a blue square."
    assert caption(scene, position_first=True) == expected
    assert caption(scene, order=[1, 0]) == "A blue square at the bottom right and a red circle at the top left."


def _position_orders(json_path):
    orders = []
    for record in json.loads(json_path.read_text()):
        words = record["conversations"][1]["value"].lower()
        orders.append([POSITIONS.index(p) for _, p in sorted((words.find(p), p) for p in POSITIONS if p in words)])
    return orders


def test_caption_order_shuffled_by_default_reading_on_request(tmp_path):
    # shuffled: a captioner must look each object up instead of scanning the picture in reading order
    shuffled = _position_orders(dataset(split="captions", num_images=60).materialize(tmp_path / "s")[0])
    reading = _position_orders(
        dataset(split="captions", num_images=60, caption_order="reading").materialize(tmp_path / "r")[0])
    assert all(order == sorted(order) for order in reading)
    assert sum(order != sorted(order) for order in shuffled) > 10


def bench(**options):
    return get_registry().create("benchmark", "shapes", {"per_category": 4, **options})


def test_benchmark_items_are_balanced_and_deterministic():
    items = bench().load_items(None)
    assert len(items) == 20
    cats = [it.meta["category"] for it in items]
    assert {c: cats.count(c) for c in set(cats)} == {"colour": 4, "shape": 4, "count": 4, "position": 4,
                                                     "yes/no": 4}
    again = bench().load_items(None)
    assert [(i.prompt, i.meta["answer"]) for i in items] == [(i.prompt, i.meta["answer"]) for i in again]
    assert items[0].image.size == (64, 64)
    assert len(bench().load_items(None, limit=7)) == 7


def test_scoring_by_hand(tmp_path):
    b = bench()
    items = b.load_items(None)
    answers = {}
    for it in items:
        cat = it.meta["category"]
        if cat == "colour":
            answers[it.item_id] = it.meta["answer"].upper() + "."  # case and full stop are forgiven
        elif cat == "shape":
            answers[it.item_id] = "hexagon"  # all wrong
        elif cat == "count" and it.item_id.endswith(("0", "1")):
            answers[it.item_id] = it.meta["answer"]  # 2 of 4 right
        # position and yes/no: missing predictions count as wrong
    result = b.score(items, answers, tmp_path)
    m = result.metrics
    assert m["colour/accuracy"] == 1.0 and m["shape/accuracy"] == 0.0
    assert m["count/accuracy"] == 0.5 and m["position/accuracy"] == 0.0
    assert m["overall/accuracy"] == pytest.approx((4 + 0 + 2 + 0 + 0) / 20)
    assert m["shape/chance"] == pytest.approx(1 / 3) and m["yes/no/chance"] == 0.5
    assert result.tables[0].columns == ["category", "questions", "accuracy", "chance"]
    files = b.write_answers(items, answers, tmp_path)
    lines = files[0].read_text().splitlines()
    assert len(lines) == 20 and json.loads(lines[0])["question_id"] == items[0].item_id


from tinyllava.testing.conformance import ComponentConformance  # noqa: E402


class TestShapesDatasetConformance(ComponentConformance):
    kind = "dataset"
    name = "shapes"
    options = {"num_images": 4}


class TestShapesBenchmarkConformance(ComponentConformance):
    kind = "benchmark"
    name = "shapes"
    options = {"per_category": 2}


def test_max_objects_limits_every_picture(tmp_path):
    json_path, _ = dataset(split="captions", max_objects=1).materialize(tmp_path)
    for record in json.loads(json_path.read_text()):
        assert record["conversations"][1]["value"].lower().count("at the ") == 1
    json_path, _ = dataset(split="captions").materialize(tmp_path)
    counts = {r["conversations"][1]["value"].lower().count("at the ") for r in json.loads(json_path.read_text())}
    assert max(counts) > 1


def test_min_rounds_sets_the_fewest_rounds(tmp_path):
    json_path, _ = dataset(split="instruct", min_rounds=4, max_rounds=4, text_only_fraction=0).materialize(tmp_path)
    assert {len(r["conversations"]) for r in json.loads(json_path.read_text())} == {8}
    json_path, _ = dataset(split="instruct", max_rounds=4, text_only_fraction=0).materialize(tmp_path)
    assert min(len(r["conversations"]) for r in json.loads(json_path.read_text())) == 2


def test_min_rounds_above_max_rounds_is_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="min_rounds \\(5\\) is above max_rounds \\(3\\)"):
        get_registry().component_class("dataset", "shapes").Options.model_validate({"min_rounds": 5})


def human_questions(json_path):
    return [c["value"].replace("<image>", "").strip() for r in json.loads(json_path.read_text()) if "image" in r
            for c in r["conversations"] if c["from"] == "human"]


def test_question_weights_choose_the_categories(tmp_path):
    json_path, _ = dataset(split="instruct", question_weights={"count": 1.0}).materialize(tmp_path)
    assert set(human_questions(json_path)) == {"How many shapes are there?"}
    json_path, _ = dataset(split="instruct", question_weights={"count": 1.0, "position": 0.0,
                                                               "colour": 1.0}).materialize(tmp_path)
    asked = {q.split(" ")[1] for q in human_questions(json_path)}
    assert asked == {"many", "colour"}  # "How many ...", "What colour ..."; position (weight 0) never asked


@pytest.mark.parametrize(("weights", "message"), [({"size": 1.0}, "unknown question categories \\['size'\\]"),
                                                  ({"count": 0.0}, "at least one above 0")])
def test_bad_question_weights_are_refused(weights, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        get_registry().component_class("dataset", "shapes").Options.model_validate({"question_weights": weights})


@pytest.mark.parametrize(("fraction", "expected"), [(1.0, {True}), (0.0, {False}), (0.5, {True, False})])
def test_position_first_fraction_sets_the_caption_style(tmp_path, fraction, expected):
    json_path, _ = dataset(split="captions", position_first_fraction=fraction).materialize(tmp_path)
    styles = {r["conversations"][1]["value"].startswith("At the ") for r in json.loads(json_path.read_text())}
    assert styles == expected
