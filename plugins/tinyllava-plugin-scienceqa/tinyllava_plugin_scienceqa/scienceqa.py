"""ScienceQA (test split, IMG subset reported), scored like LLaVA's eval_science_qa.py.

The answer letter is read strictly: the whole answer is one of A-E; or it starts with "<letter>. "; or
the pattern "The answer is <capital letter><any character>" occurs exactly once. Anything else is FAILED,
which (like a letter beyond the problem's choices) never matches the answer index, so it scores as wrong
and stays in the denominator. An unanswered problem is FAILED and, as its prompt is unknown, counts as a
text-only problem: it is in `accuracy` but not in `img_accuracy`.
`img_accuracy` (problems shown with their image) is TinyLLaVA's "SQA-image" column.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

from tinyllava.components.base import ComponentOptions
from tinyllava.components.benchmark import Benchmark, BenchmarkResult, EvalItem, ScoreTable
from tinyllava.eval.native_files import (
    Layout,
    apply_limit,
    check_images,
    read_json,
    with_suffix,
    write_llava_answers,
)

QUESTION_FILE = "llava_test_CQM-A.json"
LETTER_SUFFIX = "Answer with the option's letter from the given choices directly."
OPTIONS = ("A", "B", "C", "D", "E")
_ANSWER_IS = re.compile(r"The answer is ([A-Z]).")
LAYOUT = Layout(
    "scienceqa",
    f"  <data>/{QUESTION_FILE}\n  <data>/problems.json\n  <data>/pid_splits.json\n"
    "  <data>/images/test/<pid>/image.png",
    "LLaVA's eval.zip (playground/data/eval/scienceqa) for llava_test_CQM-A.json; problems.json, "
    "pid_splits.json and the test images from the ScienceQA repository "
    "(https://github.com/lupantech/ScienceQA, data/scienceqa)",
    subdir="scienceqa",
    marker=QUESTION_FILE,
)


def parse_letter(text: str) -> str:
    """The option letter eval_science_qa.py reads from an answer, or "FAILED"."""
    if text in OPTIONS:
        return text
    if len(text) >= 3 and text[0] in OPTIONS and text[1:3] == ". ":
        return text[0]
    found = _ANSWER_IS.findall(text)
    return found[0] if len(found) == 1 else "FAILED"


def prediction_index(letter: str, n_choices: int) -> int:
    """Index of the letter among the problem's options; -1 (never correct) for FAILED or an extra letter."""
    return OPTIONS.index(letter) if letter in OPTIONS[:n_choices] else -1


class ScienceQAOptions(ComponentOptions):
    pass


class ScienceQABenchmark(Benchmark):
    Options: ClassVar[type[ComponentOptions]] = ScienceQAOptions

    def load_items(self, data_dir: Path | None, limit: int | None = None) -> list[EvalItem]:
        """Every test problem of the LLaVA question file; text-only problems are run without an image."""
        root = LAYOUT.root(data_dir)
        questions = read_json(LAYOUT.file(root, QUESTION_FILE), LAYOUT)
        problems = read_json(LAYOUT.file(root, "problems.json"), LAYOUT)
        test_ids = set(read_json(LAYOUT.file(root, "pid_splits.json"), LAYOUT).get("test", []))
        images = LAYOUT.folder(root, "images/test")
        items = []
        for q in questions:
            pid = str(q["id"])
            if pid not in test_ids:
                continue
            problem = problems.get(pid)
            if problem is None:
                raise LAYOUT.error(f"problem {pid} of {QUESTION_FILE} is not in problems.json")
            question = q["conversations"][0]["value"].replace("<image>", "").strip()
            items.append(
                EvalItem(
                    item_id=pid,
                    prompt=with_suffix(question, LETTER_SUFFIX),
                    image=images / q["image"] if q.get("image") else None,
                    max_new_tokens=1024,
                    meta={
                        "question_id": pid,
                        "n_choices": len(problem["choices"]),
                        "answer": int(problem["answer"]),
                    },
                )
            )
        return check_images(apply_limit(items, limit), LAYOUT)

    def write_answers(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> list[Path]:
        """LLaVA's answers file; its prompt holds <image> exactly for the problems shown with an image."""
        return [
            write_llava_answers(
                Path(out_dir) / "scienceqa_answers.jsonl", "scienceqa", items, answers, _answers_prompt
            )
        ]

    def score(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> BenchmarkResult:
        result, summary = score_scienceqa(items, answers)
        path = Path(out_dir) / "scienceqa_result.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, ensure_ascii=False), encoding="utf-8")
        result.files.append(str(path))
        return result


def _answers_prompt(item: EvalItem) -> str:
    return f"<image>\n{item.prompt}" if item.image is not None else item.prompt


def score_scienceqa(items: list[EvalItem], answers: dict[str, str]) -> tuple[BenchmarkResult, dict[str, Any]]:
    """Metrics plus the --output-result summary of eval_science_qa.py."""
    correct = total = img_correct = img_total = failed = 0
    results: dict[str, int] = {}
    outputs: dict[str, str] = {}
    for it in items:
        answered = it.item_id in answers
        text = answers[it.item_id] if answered else "FAILED"
        letter = parse_letter(text)
        idx = prediction_index(letter, it.meta["n_choices"])
        right = idx == it.meta["answer"]
        multimodal = answered and it.image is not None
        total += 1
        correct += right
        failed += letter == "FAILED"
        if multimodal:
            img_total += 1
            img_correct += right
        results[it.item_id] = idx
        outputs[it.item_id] = text
    accuracy = 100 * correct / total if total else 0.0
    img_accuracy = 100 * img_correct / img_total if img_total else 0.0
    metrics: dict[str, Any] = {
        "img_accuracy": img_accuracy,
        "accuracy": accuracy,
        "img_correct": img_correct,
        "img_total": img_total,
        "correct": correct,
        "total": total,
        "failed": failed,
    }
    table = ScoreTable(
        "ScienceQA test (LLaVA letter parsing)",
        ["subset", "problems", "correct", "accuracy %"],
        [
            ["IMG", img_total, img_correct, round(img_accuracy, 2)],
            ["all", total, correct, round(accuracy, 2)],
        ],
    )
    summary = {"acc": accuracy, "correct": correct, "count": total, "results": results, "outputs": outputs}
    return BenchmarkResult(metrics=metrics, tables=[table]), summary
