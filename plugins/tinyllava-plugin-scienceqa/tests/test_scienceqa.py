"""ScienceQA: the strict letter parser, FAILED handling, the IMG subset, a native fixture, the registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest
from tinyllava_plugin_scienceqa.scienceqa import ScienceQABenchmark, parse_letter, prediction_index

from tinyllava.components.benchmark import DataLayoutError
from tinyllava.testing.conformance import ComponentConformance

SUFFIX = "Answer with the option's letter from the given choices directly."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A", "A"),
        ("E", "E"),
        ("B. Paris", "B"),
        ("B. ", "B"),  # exactly "<letter>. "
        ("B.", "FAILED"),  # too short for the "X. " form, no "The answer is"
        ("(B)", "FAILED"),
        ("b", "FAILED"),  # case-sensitive
        (" A", "FAILED"),
        ("F", "FAILED"),
        ("The answer is C.", "C"),
        ("So... The answer is D, clearly", "D"),
        ("The answer is C", "FAILED"),  # the pattern needs one more character after the letter
        ("The answer is A. The answer is B.", "FAILED"),  # two matches
        ("The answer is (B).", "FAILED"),
        ("The answer is F.", "F"),  # parsed, but not an option -> index -1
        ("", "FAILED"),
    ],
)
def test_parse_letter(text: str, expected: str) -> None:
    assert parse_letter(text) == expected


def test_prediction_index() -> None:
    assert prediction_index("B", 3) == 1
    assert prediction_index("E", 4) == -1  # a letter beyond the problem's choices
    assert prediction_index("F", 5) == -1
    assert prediction_index("FAILED", 5) == -1


@pytest.fixture
def sqa_dir(tmp_path: Path) -> Path:
    root = tmp_path / "scienceqa"
    (root / "images" / "test").mkdir(parents=True)

    def problem(choices: list[str], answer: int, image: bool) -> dict:
        return {
            "question": "q",
            "choices": choices,
            "answer": answer,
            "hint": "",
            "image": "image.png" if image else None,
            "subject": "natural science",
            "split": "test",
        }

    problems = {
        "1": problem(["x", "y", "z"], 1, True),
        "2": problem(["x", "y"], 0, True),
        "3": problem(["a", "b", "c", "d"], 3, False),
        "4": problem(["a", "b", "c"], 0, True),
        "9": problem(["a", "b"], 0, False),  # a train problem: not scored
    }
    (root / "problems.json").write_text(json.dumps(problems))
    (root / "pid_splits.json").write_text(json.dumps({"test": ["1", "2", "3", "4"], "train": ["9"]}))

    def line(pid: str, body: str, image: bool) -> dict:
        entry = {
            "id": pid,
            "conversations": [
                {"from": "human", "value": ("<image>\n" if image else "") + body},
                {"from": "gpt", "value": "A"},
            ],
        }
        if image:
            entry["image"] = f"{pid}/image.png"
        return entry

    lines = [
        line("1", "Context: A hint.\nWhich is it?\nA. x\nB. y\nC. z", True),
        line("2", "Which?\nA. x\nB. y", True),
        line("3", f"Pick one.\nA. a\nB. b\nC. c\nD. d\n{SUFFIX}", False),  # suffix already there: not doubled
        line("4", "Which?\nA. a\nB. b\nC. c", True),
        line("9", "Train?\nA. a\nB. b", False),
    ]
    (root / "llava_test_CQM-A.json").write_text(json.dumps(lines))
    for entry in lines:
        if "image" in entry:
            (root / "images" / "test" / entry["image"]).parent.mkdir(parents=True, exist_ok=True)
            (root / "images" / "test" / entry["image"]).touch()
    return root


def test_load_items(sqa_dir: Path) -> None:
    items = ScienceQABenchmark().load_items(sqa_dir)
    assert [it.item_id for it in items] == ["1", "2", "3", "4"]
    assert items[0].prompt == f"Context: A hint.\nWhich is it?\nA. x\nB. y\nC. z\n{SUFFIX}"
    assert items[0].image == sqa_dir.resolve() / "images" / "test" / "1" / "image.png"
    assert items[2].image is None and items[2].prompt.count(SUFFIX) == 1
    assert items[0].max_new_tokens == 1024
    assert len(ScienceQABenchmark().load_items(sqa_dir, limit=2)) == 2


def test_score_failed_and_img_subset(sqa_dir: Path, tmp_path: Path) -> None:
    bench = ScienceQABenchmark()
    items = bench.load_items(sqa_dir)
    # 1: "B" right (image); 2: "(A)" FAILED (image); 3: right (text-only); 4: answered "C", wrong (image)
    result = bench.score(items, {"1": "B", "2": "(A)", "3": "The answer is D.", "4": "C"}, tmp_path)
    m = result.metrics
    assert (m["correct"], m["total"], m["failed"]) == (2, 4, 1)
    assert m["accuracy"] == pytest.approx(50.0)  # 2 / 4
    assert m["img_accuracy"] == pytest.approx(100 / 3)  # problems 1, 2, 4 -> 1 / 3
    summary = json.loads((tmp_path / "scienceqa_result.json").read_text())
    assert summary["results"] == {"1": 1, "2": -1, "3": 3, "4": 2}
    # 4 unanswered: FAILED and, with no prompt, counted as text-only -> IMG is 1 / 2 (problems 1, 2)
    m = bench.score(items, {"1": "B", "2": "(A)", "3": "The answer is D."}, tmp_path).metrics
    assert m["accuracy"] == pytest.approx(50.0) and m["failed"] == 2
    assert m["img_accuracy"] == pytest.approx(50.0) and m["img_total"] == 2


def test_answers_file_marks_image_problems(sqa_dir: Path, tmp_path: Path) -> None:
    bench = ScienceQABenchmark()
    items = bench.load_items(sqa_dir)
    path = bench.write_answers(items, {"1": "B", "3": "D"}, tmp_path)[0]
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [ln["question_id"] for ln in lines] == ["1", "3"]
    assert lines[0]["prompt"].startswith("<image>\n") and "<image>" not in lines[1]["prompt"]


def test_layout_errors(sqa_dir: Path) -> None:
    (sqa_dir / "images" / "test" / "2" / "image.png").unlink()
    with pytest.raises(DataLayoutError, match="1 of 4 images are missing"):
        ScienceQABenchmark().load_items(sqa_dir)
    (sqa_dir / "pid_splits.json").unlink()
    with pytest.raises(DataLayoutError) as err:
        ScienceQABenchmark().load_items(sqa_dir)
    assert "pid_splits.json" in str(err.value) and "ScienceQA" in str(err.value)
    with pytest.raises(DataLayoutError, match="does not exist"):
        ScienceQABenchmark().load_items(sqa_dir / "nope")


def test_registered_through_entry_points() -> None:
    from tinyllava.plugins.registry import get_registry, reset_registry

    reset_registry()
    try:
        assert isinstance(get_registry().create("benchmark", "scienceqa", {}), ScienceQABenchmark)
    finally:
        reset_registry()


class TestScienceQAConformance(ComponentConformance):
    """The shared contract checks: entry points, an import-light entry module, strict options."""

    kind: ClassVar[str] = "benchmark"
    name: ClassVar[str] = "scienceqa"
