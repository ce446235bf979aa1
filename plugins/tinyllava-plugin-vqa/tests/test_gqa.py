"""GQA on a tiny native fixture: LLaVA's converter and eval.py's metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tinyllava_plugin_vqa.gqa import GQABenchmark, gqa_prediction

from tinyllava.components.benchmark import DataLayoutError

SUFFIX = "\nAnswer the question using a single word or phrase."


def _q(
    question: str, answer: str, structural: str, semantic: str, glob: str | None, ops: list[tuple[str, str]]
) -> dict:
    return {
        "imageId": "n1",
        "question": question,
        "answer": answer,
        "fullAnswer": answer,
        "isBalanced": True,
        "groups": {"global": glob, "local": "x"},
        "types": {"structural": structural, "semantic": semantic, "detailed": "d"},
        "semantic": [{"operation": o, "argument": a, "dependencies": []} for o, a in ops],
    }


@pytest.fixture
def gqa_dir(tmp_path: Path) -> Path:
    root = tmp_path / "gqa"
    (root / "data" / "images").mkdir(parents=True)
    official = {
        "1": _q("Is there a table?", "yes", "verify", "obj", None, [("select", "table (1)"), ("exist", "?")]),
        "2": _q(
            "What is the furniture?",
            "table",
            "query",
            "cat",
            "furniture",
            [("select", "furniture (2)"), ("query", "name")],
        ),
        "3": _q(
            "Which side is the cup on?",
            "left",
            "query",
            "rel",
            "side",
            [("select", "cup (3)"), ("relate", "on"), ("query", "hposition")],
        ),
        "4": _q(
            "Which side is the pen on?",
            "right",
            "query",
            "rel",
            "side",
            [("select", "pen (4)"), ("query", "hposition")],
        ),
    }
    (root / "data" / "testdev_balanced_questions.json").write_text(json.dumps(official))
    lines = [
        {"question_id": k, "image": "n1.jpg", "text": v["question"] + SUFFIX, "category": "default"}
        for k, v in official.items()
    ]
    (root / "llava_gqa_testdev_balanced.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (root / "data" / "images" / "n1.jpg").touch()
    return root


def test_converter() -> None:
    assert gqa_prediction("Yes.") == "yes"
    assert gqa_prediction("left..") == "left"
    assert gqa_prediction(" Right") == " right"  # spaces are kept
    assert gqa_prediction("T-shirt.") == "t-shirt"
    assert gqa_prediction("") == ""


def test_load_items(gqa_dir: Path) -> None:
    items = GQABenchmark().load_items(gqa_dir)
    assert [it.item_id for it in items] == ["1", "2", "3", "4"]
    assert items[0].prompt == "Is there a table?" + SUFFIX
    assert items[0].image == gqa_dir.resolve() / "data" / "images" / "n1.jpg"
    # steps: q1 "select" counts, "exist: ?" does not; q2 "query: name" does not count
    assert [it.meta["steps"] for it in items] == [1, 1, 3, 2]
    assert items[0].meta["words"] == 4
    # LLaVA's eval root (playground/data/eval, holding gqa/) works as --data too
    assert len(GQABenchmark().load_items(gqa_dir.parent, limit=2)) == 2


def test_score(gqa_dir: Path, tmp_path: Path) -> None:
    bench = GQABenchmark()
    items = bench.load_items(gqa_dir)
    answers = {"1": "Yes.", "2": "The table", "3": "left..", "4": " Right"}
    result = bench.score(items, answers, tmp_path)
    m = result.metrics
    # correct: 1 ("yes"), 3 ("left"); wrong: 2 ("the table"), 4 (" right" keeps its space)
    assert m["accuracy"] == pytest.approx(50.0)
    assert m["binary"] == pytest.approx(100.0)  # only q1 is not a "query"
    assert m["open"] == pytest.approx(100 / 3)  # q2 0, q3 1, q4 0
    # distribution: group furniture: gold table=1, predicted 0 -> (0-1)^2/1 = 1, weight 1
    #               group side: left 1 vs 1 -> 0; right 1 vs 0 -> 1; score 1, weight 2
    #               (1*1 + 1*2) / (1 + 2) = 1.0, divided by 100
    assert m["distribution"] == pytest.approx(0.01)
    assert m["structural/query"] == pytest.approx(100 / 3)
    assert m["semantic/rel"] == pytest.approx(50.0)
    assert m["steps/1"] == pytest.approx(50.0)  # q1 right, q2 wrong
    files = bench.write_answers(items, answers, tmp_path / "o")
    preds = json.loads((tmp_path / "o" / "testdev_balanced_predictions.json").read_text())
    assert preds[1] == {"questionId": "2", "prediction": "the table"}
    assert len(files) == 2


def test_missing_prediction_is_an_error(gqa_dir: Path, tmp_path: Path) -> None:
    bench = GQABenchmark()
    items = bench.load_items(gqa_dir)
    with pytest.raises(ValueError, match="missing predictions for 1"):
        bench.score(items, {"1": "yes", "2": "table", "3": "left"}, tmp_path)


def test_layout_errors(gqa_dir: Path) -> None:
    (gqa_dir / "data" / "images" / "n1.jpg").unlink()
    with pytest.raises(DataLayoutError, match="4 of 4 images are missing") as err:
        GQABenchmark().load_items(gqa_dir)
    assert "n1.jpg" in str(err.value)
    (gqa_dir / "data" / "testdev_balanced_questions.json").unlink()
    with pytest.raises(DataLayoutError) as err:
        GQABenchmark().load_items(gqa_dir)
    assert "testdev_balanced_questions.json" in str(err.value)
    assert "Where to get it" in str(err.value)
