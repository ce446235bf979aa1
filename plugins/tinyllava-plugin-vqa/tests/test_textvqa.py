"""TextVQA on a tiny native fixture: question recovery from prompts, m4c accuracy, registry path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from tinyllava_plugin_vqa.textvqa import TextVQABenchmark, question_from_prompt

from tinyllava.components.benchmark import DataLayoutError
from tinyllava.testing.conformance import ComponentConformance

SUFFIX = "Answer the question using a single word or phrase."


@pytest.fixture
def textvqa_dir(tmp_path: Path) -> Path:
    root = tmp_path / "textvqa"
    (root / "train_images").mkdir(parents=True)
    data = [
        {
            "question_id": 1,
            "image_id": "img1",
            "question": "what brand is this?",
            "answers": ["Coca Cola"] * 2 + ["coca-cola"] + ["pepsi"] * 7,
        },
        {"question_id": 2, "image_id": "img1", "question": "what number is shown?", "answers": ["7"] * 10},
        {"question_id": 3, "image_id": "img2", "question": "what does it say?", "answers": ["stop"] * 10},
    ]
    (root / "TextVQA_0.5.1_val.json").write_text(json.dumps({"dataset_name": "textvqa", "data": data}))
    lines = [
        {
            "question_id": "img1",
            "image": "img1.jpg",
            "text": f"What brand is this?\nReference OCR token: COCA, Cola\n{SUFFIX}",
        },
        {"question_id": "img1", "image": "img1.jpg", "text": f"What number is shown?\n{SUFFIX}"},
        {
            "question_id": "img2",
            "image": "img2.jpg",
            "text": f"Reference OCR token: STOP\nWhat does it say?\n{SUFFIX}",
        },
    ]
    (root / "llava_textvqa_val_v051_ocr.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    for name in ("img1.jpg", "img2.jpg"):
        (root / "train_images" / name).touch()
    return root


def test_question_from_prompt() -> None:
    assert question_from_prompt(f"What?\nReference OCR token: A, B\n{SUFFIX}") == "what?"
    assert question_from_prompt(f"Reference OCR token: A\nWhy Not?\n{SUFFIX}") == "why not?"
    assert question_from_prompt(f"Who?\n{SUFFIX}") == "who?"
    assert question_from_prompt("OCR tokens: a b Question: Where Is It? Short answer:") == "where is it?"
    with pytest.raises(ValueError):
        question_from_prompt("one line only")


def test_load_and_score(textvqa_dir: Path, tmp_path: Path) -> None:
    bench = TextVQABenchmark()
    items = bench.load_items(textvqa_dir)
    assert [it.meta["answers"][0] for it in items] == ["Coca Cola", "7", "stop"]
    assert items[0].prompt.endswith(SUFFIX) and items[0].prompt.count(SUFFIX) == 1
    assert items[2].image == textvqa_dir.resolve() / "train_images" / "img2.jpg"
    # item 0: "COCA-COLA" -> "coca cola", k=3 -> 0.9; item 1: "Seven" -> "7", k=10 -> 1.0;
    # item 2 unanswered -> not scored (the official script iterates the results file)
    result = bench.score(items, {items[0].item_id: "COCA-COLA", items[1].item_id: "Seven"}, tmp_path)
    assert result.metrics["samples"] == 2
    assert result.metrics["accuracy"] == pytest.approx(100 * (0.9 + 1.0) / 2)
    path = bench.write_answers(items, {items[0].item_id: "x"}, tmp_path / "o")[0]
    line = json.loads(path.read_text().splitlines()[0])
    assert line["question_id"] == "img1" and line["prompt"].startswith("What brand is this?\nReference OCR")


def test_unmatched_question_is_a_layout_error(textvqa_dir: Path) -> None:
    qfile = textvqa_dir / "llava_textvqa_val_v051_ocr.jsonl"
    qfile.write_text(
        json.dumps({"question_id": "img9", "image": "img9.jpg", "text": f"Huh?\n{SUFFIX}"}) + "\n"
    )
    with pytest.raises(DataLayoutError, match="no annotation"):
        TextVQABenchmark().load_items(textvqa_dir)
    qfile.unlink()
    with pytest.raises(DataLayoutError, match="llava_textvqa_val_v051_ocr.jsonl"):
        TextVQABenchmark().load_items(textvqa_dir)


def test_registered_through_entry_points() -> None:
    from tinyllava.plugins.registry import get_registry, reset_registry

    reset_registry()
    try:
        registry = get_registry()
        for name, cls_name in [
            ("vqav2", "VQAv2Benchmark"),
            ("gqa", "GQABenchmark"),
            ("textvqa", "TextVQABenchmark"),
        ]:
            bench = registry.create("benchmark", name, {})
            assert type(bench).__name__ == cls_name and bench.kind == "benchmark"
        assert registry.create("benchmark", "vqav2", {"split": "val"}).options.split == "val"
        with pytest.raises(Exception, match="splt"):
            registry.create("benchmark", "vqav2", {"splt": "val"})
    finally:
        reset_registry()


class TestVQAv2Conformance(ComponentConformance):
    """The shared contract checks: entry points, an import-light entry module, strict options."""

    kind: ClassVar[str] = "benchmark"
    name: ClassVar[str] = "vqav2"
    options: ClassVar[dict[str, Any]] = {"split": "val"}


class TestGQAConformance(ComponentConformance):
    """The shared contract checks: entry points, an import-light entry module, strict options."""

    kind: ClassVar[str] = "benchmark"
    name: ClassVar[str] = "gqa"


class TestTextVQAConformance(ComponentConformance):
    """The shared contract checks: entry points, an import-light entry module, strict options."""

    kind: ClassVar[str] = "benchmark"
    name: ClassVar[str] = "textvqa"
