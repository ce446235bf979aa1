"""MMMU on a tiny native fixture: items, TinyLLaVA's no-image fallback, weighted accuracies, registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from tinyllava_plugin_mmmu.mmmu import INVALID, MMMUBenchmark

from tinyllava.components.benchmark import DataLayoutError
from tinyllava.testing.conformance import ComponentConformance

MC = "Answer with the option's letter from the given choices directly."
OPEN = "Answer the question using a single word or phrase."
I2A = {"A": "red", "B": "green", "C": "blue", "D": "black"}


@pytest.fixture
def mmmu_dir(tmp_path: Path) -> Path:
    root = tmp_path / "MMMU"
    (root / "all_images").mkdir(parents=True)
    (root / "eval").mkdir()

    def mc(qid: str, image: bool) -> dict:
        q = {
            "id": qid,
            "question_type": "multiple-choice",
            "all_choices": list(I2A),
            "index2ans": I2A,
            "prompt": f"Which colour?\n(A) red\n(B) green\n(C) blue\n(D) black\n\n{MC}",
        }
        if image:
            q["image"] = f"{qid}_1.png"
        return q

    def op(qid: str, image: bool, prompt: str) -> dict:
        q = {"id": qid, "question_type": "short-answer", "prompt": prompt}
        if image:
            q["image"] = f"{qid}_1.png"
        return q

    anns = [
        mc("validation_Art_1", True),
        mc("validation_Art_2", True),
        op("validation_Math_1", True, f"What is 6*7?\n{OPEN}"),
        op("validation_Math_2", False, "What is 3+4?"),  # no suffix in the file: added in code
        mc("validation_Art_3", False),  # options are images: no single image
        mc("validation_Physics_1", True),  # left unanswered
    ]
    gold = {
        "validation_Art_1": {"question_type": "multiple-choice", "ground_truth": "B"},
        "validation_Art_2": {"question_type": "multiple-choice", "ground_truth": "A"},
        "validation_Math_1": {"question_type": "open", "ground_truth": "42"},
        "validation_Math_2": {"question_type": "open", "ground_truth": "7"},
        "validation_Art_3": {"question_type": "multiple-choice", "ground_truth": ["A", "B", "C", "D"]},
        "validation_Physics_1": {"question_type": "multiple-choice", "ground_truth": "C"},
    }
    (root / "anns_for_eval.json").write_text(json.dumps(anns))
    (root / "eval" / "answer_dict_val.json").write_text(json.dumps(gold))
    for q in anns:
        if "image" in q:
            (root / "all_images" / q["image"]).touch()
    return root


ANSWERS = {
    "validation_Art_1": "(B)",
    "validation_Art_2": "I think C.",
    "validation_Math_1": "The answer is 42.",
    "validation_Math_2": "7",
    "validation_Art_3": "D",
}


def test_load_items(mmmu_dir: Path) -> None:
    items = MMMUBenchmark().load_items(mmmu_dir)
    assert len(items) == 6
    assert items[0].prompt.endswith(f"(D) black\n\n{MC}") and items[0].prompt.count(MC) == 1
    assert items[3].prompt == f"What is 3+4?\n{OPEN}"
    assert items[0].image == mmmu_dir.resolve() / "all_images" / "validation_Art_1_1.png"
    assert items[3].image is None and items[3].max_new_tokens == 1  # TinyLLaVA ignores the model here
    assert items[0].max_new_tokens == 1024
    assert MMMUBenchmark({"no_image_policy": "text_only"}).load_items(mmmu_dir)[3].max_new_tokens == 1024


def test_score_tinyllava_policy(mmmu_dir: Path, tmp_path: Path) -> None:
    bench = MMMUBenchmark()
    items = bench.load_items(mmmu_dir)
    result = bench.score(items, ANSWERS, tmp_path)
    m = result.metrics
    # Art: 1 "(B)" right, 2 "I think C." -> C wrong, 3 no image -> seeded letter, gold is any letter -> right
    # Math: 1 "42" right, 2 no image -> "INVALID GENERATION ..." wrong (the model's "7" is ignored)
    # Physics_1: unanswered -> not evaluated (main_eval_only only sees predicted ids)
    assert m["subject/Art"] == pytest.approx(200 / 3)
    assert m["subject/Math"] == pytest.approx(50.0)
    assert "subject/Physics" not in m
    assert m["discipline/Art and Design"] == pytest.approx(200 / 3)
    assert m["discipline/Science"] == pytest.approx(50.0)
    assert m["overall"] == pytest.approx(60.0)  # (2 + 1) / 5, instance-weighted
    assert m["evaluated"] == 5 and list(m)[0] == "overall"
    files = bench.write_answers(items, ANSWERS, tmp_path / "o")
    output = json.loads(files[1].read_text())
    assert output["validation_Art_2"] == "C" and output["validation_Math_2"] == INVALID
    assert output["validation_Art_3"] in "ABCD" and "validation_Physics_1" not in output
    # the seeded fallback letter is the same in the file and in every rerun
    assert bench.predictions(items, {})["validation_Art_3"] == output["validation_Art_3"]


def test_score_text_only_policy(mmmu_dir: Path, tmp_path: Path) -> None:
    bench = MMMUBenchmark({"no_image_policy": "text_only"})
    m = bench.score(bench.load_items(mmmu_dir), ANSWERS, tmp_path).metrics
    # Math_2 now uses the model's "7" -> right: Math 2/2; Art unchanged 2/3 -> overall 4/5
    assert m["subject/Math"] == pytest.approx(100.0)
    assert m["overall"] == pytest.approx(80.0)


def test_layout_errors(mmmu_dir: Path) -> None:
    (mmmu_dir / "all_images" / "validation_Art_1_1.png").unlink()
    with pytest.raises(DataLayoutError, match="1 of 6 images are missing"):
        MMMUBenchmark().load_items(mmmu_dir)
    gold_file = mmmu_dir / "eval" / "answer_dict_val.json"
    gold_file.write_text(json.dumps({}))
    with pytest.raises(DataLayoutError, match="no entry in answer_dict_val.json"):
        MMMUBenchmark().load_items(mmmu_dir)
    gold_file.unlink()
    with pytest.raises(DataLayoutError) as err:
        MMMUBenchmark().load_items(mmmu_dir)
    assert "answer_dict_val.json" in str(err.value) and "MMMU.zip" in str(err.value)


def test_registered_through_entry_points() -> None:
    from tinyllava.plugins.registry import get_registry, reset_registry

    reset_registry()
    try:
        bench = get_registry().create("benchmark", "mmmu", {"seed": 7})
        assert isinstance(bench, MMMUBenchmark) and bench.options.seed == 7
        with pytest.raises(Exception, match="no_image_policy"):
            get_registry().create("benchmark", "mmmu", {"no_image_policy": "skip"})
    finally:
        reset_registry()


class TestMMMUConformance(ComponentConformance):
    """The shared contract checks: entry points, an import-light entry module, strict options."""

    kind: ClassVar[str] = "benchmark"
    name: ClassVar[str] = "mmmu"
    options: ClassVar[dict[str, Any]] = {"seed": 3, "no_image_policy": "text_only"}
