"""VQAv2 on tiny native fixtures: the test-dev submission and the val scorer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tinyllava_plugin_vqa.vqav2 import VQAv2Benchmark

from tinyllava.components.benchmark import DataLayoutError

SUFFIX = "\nAnswer the question using a single word or phrase."


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def testdev_dir(tmp_path: Path) -> Path:
    root = tmp_path / "vqav2"
    (root / "test2015").mkdir(parents=True)
    q = [
        {
            "question_id": 11,
            "image": "COCO_test2015_000000000001.jpg",
            "text": "What color?" + SUFFIX,
            "category": "default",
        },
        {
            "question_id": 12,
            "image": "COCO_test2015_000000000001.jpg",
            "text": "How many?" + SUFFIX,
            "category": "default",
        },
        # a question file without the suffix: the suffix is added in code, once
        {
            "question_id": 13,
            "image": "COCO_test2015_000000000002.jpg",
            "text": "Is it?",
            "category": "default",
        },
    ]
    _jsonl(root / "llava_vqav2_mscoco_test-dev2015.jsonl", q)
    extra = {"question_id": 99, "image": "COCO_test2015_000000000003.jpg", "text": "Why?" + SUFFIX}
    _jsonl(root / "llava_vqav2_mscoco_test2015.jsonl", [extra, *q])
    for row in q:
        (root / "test2015" / row["image"]).touch()
    return root


def _val_dir(tmp_path: Path) -> Path:
    root = tmp_path / "vqav2val"
    (root / "val2014").mkdir(parents=True)
    questions = [
        {"image_id": 42, "question": "Is this a cat?", "question_id": 420},
        {"image_id": 42, "question": "How many cats?", "question_id": 421},
        {"image_id": 7, "question": "What is it?", "question_id": 70},
        {"image_id": 7, "question": "Whose hat?", "question_id": 71},
    ]

    def ann(qid: int, answers: list[str], qtype: str, atype: str) -> dict:
        return {
            "question_id": qid,
            "image_id": 0,
            "question_type": qtype,
            "answer_type": atype,
            "multiple_choice_answer": answers[0],
            "answers": [
                {"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)
            ],
        }

    annotations = [
        ann(420, ["yes"] * 10, "is this", "yes/no"),
        ann(421, ["2"] * 3 + ["3"] * 7, "how many", "number"),
        ann(70, ["hat"] * 10, "what is", "other"),
        ann(71, ["man's"] * 10, "whose", "other"),
    ]
    (root / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(
        json.dumps({"data_subtype": "val2014", "questions": questions})
    )
    (root / "v2_mscoco_val2014_annotations.json").write_text(json.dumps({"annotations": annotations}))
    for image_id in (42, 7):
        (root / "val2014" / f"COCO_val2014_{image_id:012d}.jpg").touch()
    return root


def test_load_testdev(testdev_dir: Path) -> None:
    items = VQAv2Benchmark().load_items(testdev_dir)
    assert [it.item_id for it in items] == ["11", "12", "13"]
    assert items[0].prompt == "What color?" + SUFFIX
    assert items[2].prompt == "Is it?" + SUFFIX
    assert items[0].image == testdev_dir.resolve() / "test2015" / "COCO_test2015_000000000001.jpg"
    assert items[0].max_new_tokens == 128
    assert "<image>" not in items[0].prompt
    assert len(VQAv2Benchmark().load_items(testdev_dir, limit=2)) == 2


def test_testdev_submission(testdev_dir: Path, tmp_path: Path) -> None:
    bench = VQAv2Benchmark()
    items = bench.load_items(testdev_dir)
    answers = {"11": "The Red.", "12": "Two"}  # 13 unanswered
    out = tmp_path / "out"
    files = bench.write_answers(items, answers, out)
    submission = json.loads((out / "vqav2_test-dev_submission.json").read_text())
    # every test2015 question, in that file's order; EvalAI-normalised; "" when unanswered
    assert submission == [
        {"question_id": 99, "answer": ""},
        {"question_id": 11, "answer": "red"},
        {"question_id": 12, "answer": "2"},
        {"question_id": 13, "answer": ""},
    ]
    lines = [json.loads(x) for x in (out / "vqav2_test-dev_answers.jsonl").read_text().splitlines()]
    assert [ln["question_id"] for ln in lines] == [11, 12]
    assert lines[0]["prompt"] == "What color?" + SUFFIX and lines[0]["text"] == "The Red."
    assert {str(p.name) for p in files} == {"vqav2_test-dev_answers.jsonl", "vqav2_test-dev_submission.json"}
    # the full test list is read once per benchmark object: score() rewrites the submission without it
    (testdev_dir / "llava_vqav2_mscoco_test2015.jsonl").unlink()
    result = bench.score(items, answers, out)
    assert result.metrics["answered"] == 2 and result.metrics["questions"] == 3
    assert json.loads((out / "vqav2_test-dev_submission.json").read_text()) == submission
    assert "accuracy" not in result.metrics


def test_testdev_layout_errors(testdev_dir: Path) -> None:
    (testdev_dir / "llava_vqav2_mscoco_test2015.jsonl").unlink()
    with pytest.raises(DataLayoutError) as err:
        VQAv2Benchmark().load_items(testdev_dir)
    msg = str(err.value)
    assert "llava_vqav2_mscoco_test2015.jsonl" in msg and "Expected layout" in msg and "eval.zip" in msg
    with pytest.raises(DataLayoutError, match="no data folder"):
        VQAv2Benchmark().load_items(None)


def test_val_scoring(tmp_path: Path) -> None:
    bench = VQAv2Benchmark({"split": "val"})
    items = bench.load_items(_val_dir(tmp_path))
    assert items[0].prompt == "Is this a cat?" + SUFFIX
    assert items[0].image.name == "COCO_val2014_000000000042.jpg"
    answers = {"420": "Yes", "421": "two", "71": "man's"}  # 70 missing
    result = bench.score(items, answers, tmp_path)
    # 420: EvalAI "yes" vs 10x"yes" (compared raw) -> 1.0
    # 421: "two" -> EvalAI "2"; GT differ -> both sides processed -> 3 matches -> 0.9
    # 70: missing -> "" -> 0.0
    # 71: EvalAI turns "man's" into "man 's"; the 10 identical GT stay "man's" -> 0.0
    assert result.metrics["accuracy"] == pytest.approx(100 * 1.9 / 4)
    assert result.metrics["answer_type/yes/no"] == pytest.approx(100.0)
    assert result.metrics["answer_type/number"] == pytest.approx(90.0)
    assert result.metrics["answer_type/other"] == pytest.approx(0.0)
    assert result.metrics["question_type/how many"] == pytest.approx(90.0)
    assert result.metrics["answered"] == 3
    files = bench.write_answers(items, answers, tmp_path / "o")
    results = json.loads(files[1].read_text())
    assert results[1] == {"question_id": 421, "answer": "2"} and results[2] == {
        "question_id": 70,
        "answer": "",
    }


def test_val_without_evalai_preprocessing(tmp_path: Path) -> None:
    bench = VQAv2Benchmark({"split": "val", "evalai_normalize_val": False})
    items = bench.load_items(_val_dir(tmp_path))
    # identical ground truth is compared raw: 420 "Yes" vs ten "yes" -> 0, 70 "A hat." vs ten "hat" -> 0,
    # 71 "man's" equals the raw ground truth -> 1.0; 421: the answers differ, "two" -> "2" -> 0.9
    result = bench.score(items, {"420": "Yes", "421": "two", "70": "A hat.", "71": "man's"}, tmp_path)
    assert result.metrics["accuracy"] == pytest.approx(100 * 1.9 / 4)
    assert result.metrics["answer_type/yes/no"] == pytest.approx(0.0)


def test_val_layout_error(tmp_path: Path) -> None:
    root = _val_dir(tmp_path)
    (root / "val2014" / "COCO_val2014_000000000007.jpg").unlink()
    with pytest.raises(DataLayoutError, match="2 of 4 images are missing"):
        VQAv2Benchmark({"split": "val"}).load_items(root)
    (root / "v2_mscoco_val2014_annotations.json").unlink()
    with pytest.raises(DataLayoutError, match="v2_mscoco_val2014_annotations.json"):
        VQAv2Benchmark({"split": "val"}).load_items(root)
