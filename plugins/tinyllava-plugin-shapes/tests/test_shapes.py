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
    return get_registry().create("benchmark", "shapes", {"per_category": 4, "training_sets": [], **options})


def test_benchmark_items_are_balanced_and_deterministic():
    items = bench().load_items(None)
    assert len(items) == 20 + 16  # main: 4 a category; compositional: 4 a category, no count
    cats = [it.meta["category"] for it in items if it.meta["split"] == "main"]
    assert {c: cats.count(c) for c in set(cats)} == {"colour": 4, "shape": 4, "count": 4, "position": 4,
                                                     "yes/no": 4}
    cats = [it.meta["category"] for it in items if it.meta["split"] == "compositional"]
    assert {c: cats.count(c) for c in set(cats)} == {"colour": 4, "shape": 4, "position": 4, "yes/no": 4}
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
    # the compositional split has its own table: colour right there too, nothing else
    assert m["compositional/colour/accuracy"] == 1.0 and m["compositional/shape/accuracy"] == 0.0
    assert m["compositional/overall/accuracy"] == pytest.approx(4 / 16)
    assert "compositional/count/accuracy" not in m
    assert [t.title.split(" (")[0] for t in result.tables[:2]] == ["shapes", "shapes, compositional"]
    assert result.tables[0].columns == ["category", "questions", "accuracy", "chance"]
    files = b.write_answers(items, answers, tmp_path)
    lines = files[0].read_text().splitlines()
    assert len(lines) == 36 and json.loads(lines[0])["question_id"] == items[0].item_id


from tinyllava.testing.conformance import ComponentConformance  # noqa: E402


class TestShapesDatasetConformance(ComponentConformance):
    kind = "dataset"
    name = "shapes"
    options = {"num_images": 4}


class TestShapesBenchmarkConformance(ComponentConformance):
    kind = "benchmark"
    name = "shapes"
    options = {"per_category": 2, "training_sets": []}


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


def test_benchmark_scenes_are_never_training_scenes(tmp_path):
    """Main split: compositions reserved for the benchmark; compositional split: held-out pairs; training: neither."""
    from tinyllava_plugin_shapes.dataset import ShapesDatasetOptions, build_records
    from tinyllava_plugin_shapes.scenes import HELD_OUT_PAIRS, has_held_out_pair, reserved

    train = []
    for split in ("captions", "instruct"):
        build_records(ShapesDatasetOptions(split=split, num_images=3000), None, train)
    assert not any(has_held_out_pair(s) or reserved(s.composition()) for s in train)
    assert {len(s.things) for s in train} == {1, 2, 3, 4}
    seen = {s.composition() for s in train}
    items = bench(per_category=40, training_sets=[{"split": "captions", "num_images": 3000},
                                                  {"split": "instruct", "num_images": 3000}]).load_items(None)
    assert not any(it.meta["composition"] in seen for it in items)
    for it in items:
        pairs = {(colour, shape) for _, colour, shape in it.meta["composition"]}
        assert bool(pairs & HELD_OUT_PAIRS) == (it.meta["split"] == "compositional")
    assert items[0].meta["checked"] == {"training_scenes": len(train), "found": 0}
    metrics = bench(per_category=1, training_sets=[{"num_images": 50}]).score(items, {}, tmp_path).metrics
    assert metrics["scenes/checked"] == len(items) and metrics["scenes/found_in_training"] == 0


def test_the_training_check_finds_scenes_that_were_not_held_out():
    """The check is real: a training set drawn with held_out=false shares scenes with the benchmark."""
    items = bench(per_category=40, training_sets=[{"split": "captions", "num_images": 3000, "held_out": False}]
                  ).load_items(None)
    assert items[0].meta["checked"]["found"] > 10


def test_compositional_questions_ask_about_held_out_pairs():
    from tinyllava_plugin_shapes.scenes import HELD_OUT_PAIRS

    items = [it for it in bench(per_category=30).load_items(None) if it.meta["split"] == "compositional"]
    held_colours, held_shapes = {c for c, _ in HELD_OUT_PAIRS}, {s for _, s in HELD_OUT_PAIRS}
    by_category: dict[str, list] = {}
    for it in items:
        by_category.setdefault(it.meta["category"], []).append(it)
    assert {it.meta["answer"] for it in by_category["colour"]} <= held_colours
    assert {it.meta["answer"] for it in by_category["shape"]} <= held_shapes
    assert {it.meta["answer"] for it in by_category["yes/no"]} == {"yes", "no"}
    for it in by_category["yes/no"]:
        assert any(f"{c} {s}" in it.prompt for c, s in HELD_OUT_PAIRS)


def test_training_never_asks_about_a_held_out_pair(tmp_path):
    from tinyllava_plugin_shapes.scenes import HELD_OUT_PAIRS

    json_path, _ = dataset(split="instruct", num_images=400, question_weights={"yes/no": 1.0}).materialize(tmp_path)
    asked = " ".join(human_questions(json_path))
    assert "Is there a" in asked
    assert not any(f"{c} {s}" in asked for c, s in HELD_OUT_PAIRS)


def test_backgrounds_vary_and_can_be_chosen(tmp_path):
    from PIL import Image

    def corners(options):
        json_path, images = dataset(split="captions", num_images=40, **options).materialize(tmp_path)
        out = set()
        for record in json.loads(json_path.read_text()):
            pixel = Image.open(images / record["image"]).convert("RGB").getpixel((0, 0))
            out.add(pixel if pixel in {(0, 0, 0), (255, 255, 255), (128, 128, 128)} else "noise")
        return out

    assert corners({}) == {(0, 0, 0), (255, 255, 255), (128, 128, 128), "noise"}
    assert corners({"backgrounds": ["white"]}) == {(255, 255, 255)}


def test_benchmark_reports_accuracy_by_background(tmp_path):
    b = bench(per_category=8)
    items = b.load_items(None)
    answers = {it.item_id: it.meta["answer"] for it in items if it.meta["background"] == "white"}
    metrics = b.score(items, answers, tmp_path).metrics
    assert metrics["background/white/accuracy"] == 1.0 and metrics["background/black/accuracy"] == 0.0
