"""MME: the 4-character reading rule, acc+ pairing, totals, a native fixture and the registry path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest
from tinyllava_plugin_mme.mme import MMEBenchmark, parse_pred, task_metrics

from tinyllava.components.benchmark import DataLayoutError
from tinyllava.testing.conformance import ComponentConformance

SUFFIX = "Answer the question using a single word or phrase."


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Yes", "yes"),
        ("No, there isn't.", "no"),
        ("yesterday", "yes"),
        (" yes", "yes"),
        ("know", "no"),  # "no" inside the first 4 characters
        ("none", "no"),
        ("Not sure", "no"),
        ("snow", "no"),
        ("y", "other"),
        ("The answer is yes", "other"),
        ("I don't know", "other"),
        ("", "other"),
    ],
)
def test_reading_rule(answer: str, expected: str) -> None:
    # calculation.py sees the answer with the file line's newline and lower-cased
    assert parse_pred((answer + "\n").lower()) == expected


def test_task_metrics_pairs_adjacent_lines() -> None:
    # image 1: yes/no both right; image 2: right, wrong ("y" is other) -> acc 3/4, acc+ 1/2
    m = task_metrics(["Yes", "No", "Yes", "No"], ["Yes", "no", "yes", "y"])
    assert m["acc"] == pytest.approx(75.0) and m["acc_plus"] == pytest.approx(50.0)
    assert m["score"] == pytest.approx(125.0) and m["other"] == 1
    # 2 right answers on one image -> acc 50, acc+ 50; the same 2 spread over both images -> acc+ 0
    m = task_metrics(["Yes", "No", "Yes", "No"], ["Yes", "No", "no", "yes"])
    assert m["acc"] == pytest.approx(50.0) and m["acc_plus"] == pytest.approx(50.0)
    m = task_metrics(["Yes", "No", "Yes", "No"], ["Yes", "yes", "no", "no"])
    assert m["acc"] == pytest.approx(50.0) and m["acc_plus"] == 0.0
    with pytest.raises(ValueError, match="two answers"):
        task_metrics(["Yes", "No", "Yes"], ["Yes", "No", "Yes"])


@pytest.fixture
def mme_dir(tmp_path: Path) -> Path:
    root = tmp_path / "MME"
    rel = root / "MME_Benchmark_release_version"
    yn = " Please answer yes or no."
    gt = {
        "existence/000000000001.txt": [
            f"Is there a dog in this image?{yn}\tYes",
            f"Is there a cat in this image?{yn}\tNo",
        ],
        # the double space before "Please" exists in the real data
        "existence/000000000002.txt": [
            f"Is there a car in this image? {yn}\tYes",
            f"Is there a bus in this image?{yn}\tNo",
        ],
        "artwork/questions_answers_YN/10002.txt": [
            f"Is this artwork by Monet?{yn}\tYes",
            f"Is this artwork by Dali?{yn}\tNo",
        ],
        "code_reasoning/0001.txt": [f"Will the code print 5?{yn}\tYes", f"Will the code print 6?{yn}\tNo"],
    }
    for rel_path, lines in gt.items():
        (rel / rel_path).parent.mkdir(parents=True, exist_ok=True)
        (rel / rel_path).write_text("\n".join(lines) + "\n")
    (rel / "artwork" / "images").mkdir()
    rows = []
    for image, question in [
        ("existence/000000000001.jpg", "Is there a dog in this image?"),
        ("existence/000000000001.jpg", "Is there a cat in this image?"),
        ("existence/000000000002.jpg", "Is there a car in this image?"),
        ("existence/000000000002.jpg", "Is there a bus in this image?"),
        ("artwork/images/10002.jpg", "Is this artwork by Monet?"),
        ("artwork/images/10002.jpg", "Is this artwork by Dali?"),
        ("code_reasoning/0001.png", "Will the code print 5?"),
        ("code_reasoning/0001.png", "Will the code print 6?"),
    ]:
        rows.append(
            {
                "question_id": image,
                "image": image,
                "text": f"{question}\n{SUFFIX}",
                "category": image.split("/")[0],
            }
        )
    (root / "llava_mme.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for r in rows:
        (rel / r["image"]).touch()
    return root


def test_load_items(mme_dir: Path) -> None:
    items = MMEBenchmark().load_items(mme_dir)
    assert len(items) == 8
    assert items[0].item_id == "existence/000000000001.jpg#0" and items[1].item_id.endswith("#1")
    assert items[0].prompt == f"Is there a dog in this image?\n{SUFFIX}"
    assert items[2].meta["question"] == "Is there a car in this image?  Please answer yes or no."
    assert items[4].image == mme_dir.resolve() / "MME_Benchmark_release_version/artwork/images/10002.jpg"
    assert items[4].meta["file"] == "10002.txt" and items[5].meta["gt"] == "No"
    # limit is rounded up to keep both questions of the last image
    assert len(MMEBenchmark().load_items(mme_dir, limit=3)) == 4
    assert len(MMEBenchmark().load_items(mme_dir, limit=2)) == 2


def test_score_and_files(mme_dir: Path, tmp_path: Path) -> None:
    bench = MMEBenchmark()
    items = bench.load_items(mme_dir)
    texts = [
        "Yes",
        "No, there isn't.",
        "yesterday",
        "y",  # existence: acc 75, acc+ 50 -> 125
        "The answer is yes",
        "know",  # artwork: other, no -> acc 50, acc+ 0 -> 50
        "YES",
        "",
    ]  # code_reasoning: acc 50, acc+ 0 -> 50
    answers = {it.item_id: t for it, t in zip(items, texts, strict=True)}
    result = bench.score(items, answers, tmp_path)
    m = result.metrics
    assert m["perception"] == pytest.approx(175.0)  # existence 125 + artwork 50
    assert m["cognition"] == pytest.approx(50.0)
    assert m["existence/acc_plus"] == pytest.approx(50.0)
    assert m["existence/precision"] == 100.0 and m["existence/other"] == 1
    assert list(m)[0] == "perception" and m["tasks_scored"] == 3
    answers[items[0].item_id] = "Yes\tit\nis"
    bench.write_answers(items, answers, tmp_path / "o")
    lines = (tmp_path / "o" / "mme_results" / "existence.txt").read_text().splitlines()
    assert (
        lines[0] == "000000000001.txt\tIs there a dog in this image? Please answer yes or no.\tYes\tYes it is"
    )
    assert len(lines) == 4


def test_missing_answer_is_an_error(mme_dir: Path, tmp_path: Path) -> None:
    items = MMEBenchmark().load_items(mme_dir)
    with pytest.raises(ValueError, match="every question needs an answer"):
        MMEBenchmark().score(items, {items[0].item_id: "Yes"}, tmp_path)


def test_layout_errors(mme_dir: Path) -> None:
    (mme_dir / "MME_Benchmark_release_version" / "artwork" / "images" / "10002.jpg").unlink()
    with pytest.raises(DataLayoutError, match="2 of 8 images are missing"):
        MMEBenchmark().load_items(mme_dir)
    gt_file = mme_dir / "MME_Benchmark_release_version" / "code_reasoning" / "0001.txt"
    gt_file.write_text("Something else? Please answer yes or no.\tYes\n")
    with pytest.raises(DataLayoutError, match="no ground truth"):
        MMEBenchmark().load_items(mme_dir)
    (mme_dir / "llava_mme.jsonl").unlink()
    with pytest.raises(DataLayoutError) as err:
        MMEBenchmark().load_items(mme_dir)
    assert "llava_mme.jsonl" in str(err.value) and "Where to get it" in str(err.value)


def test_registered_through_entry_points() -> None:
    from tinyllava.plugins.registry import get_registry, reset_registry

    reset_registry()
    try:
        assert isinstance(get_registry().create("benchmark", "mme", {}), MMEBenchmark)
    finally:
        reset_registry()


class TestMMEConformance(ComponentConformance):
    """The shared contract checks: entry points, an import-light entry module, strict options."""

    kind: ClassVar[str] = "benchmark"
    name: ClassVar[str] = "mme"
