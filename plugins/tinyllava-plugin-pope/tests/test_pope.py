"""POPE: the yes/no reading rule, the metrics by hand, the native fixture and the registry path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest
from tinyllava_plugin_pope.pope import POPEBenchmark, pope_answer, pope_metrics

from tinyllava.components.benchmark import DataLayoutError
from tinyllava.testing.conformance import BenchmarkConformance

SUFFIX = "\nAnswer the question using a single word or phrase."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes", "yes"),
        ("No", "no"),
        ("No.", "no"),
        ("no,", "no"),  # comma removed -> token "no"
        ("There is no dog.", "no"),
        ("Yes, not really", "no"),  # "not" is a no-token
        ("yes no", "no"),
        ("Yes, there is a dog.", "yes"),
        ("NO", "yes"),  # case-sensitive
        ("No!", "yes"),  # token "No!" is not "No"
        ("Nope", "yes"),
        ("Not at all", "yes"),  # "Not" is not a no-token
        ("no\nthere", "yes"),  # split on " " only: one token "no\nthere"
        ("", "yes"),  # empty answer reads as yes
        ("1. No", "yes"),  # first sentence is "1"
    ],
)
def test_pope_answer(text: str, expected: str) -> None:
    assert pope_answer(text) == expected


def test_metrics_by_hand() -> None:
    # labels yes yes no no no / predictions yes no yes no no -> TP 1, FN 1, FP 1, TN 2
    m = pope_metrics(["yes", "no", "yes", "no", "no"], ["yes", "yes", "no", "no", "no"])
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (1, 1, 2, 1)
    p = 1 / (2 + 1e-6)  # precision = recall = 1 / (2 + eps)
    assert m["precision"] == pytest.approx(100 * p, rel=1e-12)
    assert m["recall"] == pytest.approx(100 * p, rel=1e-12)
    assert m["f1"] == pytest.approx(100 * 2 * p * p / (2 * p + 1e-6), rel=1e-12)
    assert m["accuracy"] == pytest.approx(60.0)  # (1 + 2) / 5
    assert m["yes_ratio"] == pytest.approx(40.0)  # 2 yes out of 5


def test_metrics_all_no_does_not_divide_by_zero() -> None:
    m = pope_metrics(["no", "no"], ["yes", "no"])
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0
    assert m["accuracy"] == 50.0 and m["yes_ratio"] == 0.0


def write_pope_data(root: Path) -> Path:
    """A tiny copy of POPE's files in their official layout (two categories, seven questions)."""
    (root / "coco").mkdir(parents=True)
    (root / "val2014").mkdir()

    def labels(name: str, values: list[str]) -> None:
        rows = [
            {"question_id": i + 1, "image": "x.jpg", "text": "q", "label": v} for i, v in enumerate(values)
        ]
        (root / "coco" / f"coco_pope_{name}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))

    labels("adversarial", ["yes", "yes", "no", "no", "no"])
    labels("popular", ["yes", "no"])
    # question file interleaves the categories; pairing is per category, by position
    cats = ["adversarial", "popular", "adversarial", "adversarial", "popular", "adversarial", "adversarial"]
    ids = [1, 20000001, 2, 3, 20000002, 4, 5]
    rows = [
        {
            "question_id": qid,
            "image": f"COCO_val2014_{qid:012d}.jpg",
            "text": f"Is there a thing {qid}?" + SUFFIX,
            "category": c,
        }
        for qid, c in zip(ids, cats, strict=True)
    ]
    (root / "llava_pope_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for row in rows:
        (root / "val2014" / row["image"]).touch()
    return root


@pytest.fixture
def pope_dir(tmp_path: Path) -> Path:
    return write_pope_data(tmp_path / "pope")


def test_load_and_score(pope_dir: Path, tmp_path: Path) -> None:
    bench = POPEBenchmark()
    items = bench.load_items(pope_dir)
    assert [it.meta["label"] for it in items] == ["yes", "yes", "yes", "no", "no", "no", "no"]
    assert items[0].prompt == "Is there a thing 1?" + SUFFIX and items[0].max_new_tokens == 128
    answers = {
        "1": "Yes, there is.",
        "2": "No",
        "3": "Yes",
        "4": "There is no such thing.",
        "5": "no",  # adversarial
        "20000001": "Yes",
        "20000002": "NO",  # popular
    }
    result = bench.score(items, answers, tmp_path)
    m = result.metrics
    # adversarial: same table as test_metrics_by_hand -> accuracy 60, yes ratio 40
    assert m["adversarial/accuracy"] == pytest.approx(60.0)
    assert m["adversarial/yes_ratio"] == pytest.approx(40.0)
    # popular: labels yes, no; predictions yes, yes ("NO" reads yes) -> TP 1, FP 1
    # precision 1/(2+eps), recall 1/(1+eps), F1 ~ 2*0.5*1/1.5 = 66.67%
    assert m["popular/f1"] == pytest.approx(100 * 2 / 3, abs=1e-3)
    assert m["popular/yes_ratio"] == pytest.approx(100.0)
    assert m["f1"] == pytest.approx((m["adversarial/f1"] + m["popular/f1"]) / 2)
    assert m["accuracy"] == pytest.approx((60.0 + 50.0) / 2)
    assert list(m)[0] == "f1"
    path = bench.write_answers(items, answers, tmp_path / "o")[0]
    assert len(path.read_text().splitlines()) == 7


def test_missing_answer_is_an_error(pope_dir: Path, tmp_path: Path) -> None:
    bench = POPEBenchmark()
    items = bench.load_items(pope_dir, limit=3)
    with pytest.raises(ValueError, match="by position"):
        bench.score(items, {"1": "yes", "20000001": "no"}, tmp_path)


def test_layout_errors(pope_dir: Path) -> None:
    (pope_dir / "val2014" / "COCO_val2014_000000000003.jpg").unlink()
    with pytest.raises(DataLayoutError, match="1 of 7 images are missing"):
        POPEBenchmark().load_items(pope_dir)
    assert len(POPEBenchmark().load_items(pope_dir, limit=2)) == 2  # only the loaded items are checked
    (pope_dir / "coco" / "coco_pope_popular.json").write_text(json.dumps({"label": "yes"}) + "\n")
    with pytest.raises(DataLayoutError, match="pair by position"):
        POPEBenchmark().load_items(pope_dir)
    for f in (pope_dir / "coco").iterdir():
        f.unlink()
    with pytest.raises(DataLayoutError, match="coco_pope_"):
        POPEBenchmark().load_items(pope_dir)
    (pope_dir / "llava_pope_test.jsonl").unlink()
    with pytest.raises(DataLayoutError) as err:
        POPEBenchmark().load_items(pope_dir)
    assert "llava_pope_test.jsonl" in str(err.value) and "Where to get it" in str(err.value)


def test_registered_through_entry_points() -> None:
    from tinyllava.plugins.registry import get_registry, reset_registry

    reset_registry()
    try:
        bench = get_registry().create("benchmark", "pope", {})
        assert isinstance(bench, POPEBenchmark)
        with pytest.raises(Exception, match="eps"):
            get_registry().create("benchmark", "pope", {"eps": 0})
    finally:
        reset_registry()


class TestPOPEConformance(BenchmarkConformance):
    """The benchmark kit on the tiny fixture: items, answer files, JSON metrics, layout errors."""

    kind: ClassVar[str] = "benchmark"
    name: ClassVar[str] = "pope"

    def make_data(self, root: Path) -> Path:
        return write_pope_data(root)

    def answers(self, items: list) -> dict[str, str]:
        return {item.item_id: "Yes" for item in items}
