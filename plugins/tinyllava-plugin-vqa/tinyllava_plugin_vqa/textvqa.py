"""TextVQA val (v0.5.1) with the OCR-token prompts LLaVA/TinyLLaVA use, scored like eval_textvqa.py.

Each question line is matched to its annotation by (image_id, question recovered from the prompt,
lower-cased), the way eval_textvqa's prompt_processor does it; a line that matches nothing is a data
error here (a KeyError in the official script). Scoring is the m4c accuracy with EvalAI's processor on
both sides. Only answered questions are scored, as the official script iterates the results file.
"""

from __future__ import annotations

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
    read_jsonl,
    short_answer_item,
    write_llava_answers,
)
from tinyllava_plugin_vqa.normalize import textvqa_accuracy

QUESTION_FILE = "llava_textvqa_val_v051_ocr.jsonl"
ANNOTATION_FILE = "TextVQA_0.5.1_val.json"
LAYOUT = Layout(
    "textvqa",
    f"  <data>/{QUESTION_FILE}\n  <data>/{ANNOTATION_FILE}\n  <data>/train_images/<image_id>.jpg",
    "LLaVA's eval.zip (playground/data/eval/textvqa) for the question file; TextVQA_0.5.1_val.json and "
    "train_val_images.zip from https://textvqa.org/dataset",
    subdir="textvqa",
    marker=QUESTION_FILE,
)
_OCR_PROMPT = re.compile(r"Question: (.*?) Short answer:", re.DOTALL)


def question_from_prompt(prompt: str) -> str:
    """Recover the question from a question-file prompt, with eval_textvqa's rules, lower-cased."""
    lines = prompt.split("\n")
    if prompt.startswith("OCR tokens: "):
        match = _OCR_PROMPT.search(prompt)
        if match is None:
            raise ValueError(f"cannot find 'Question: ... Short answer:' in prompt {prompt!r}")
        question = match.group(1)
    elif "Reference OCR token: " in prompt and len(lines) == 3:
        question = lines[1] if prompt.startswith("Reference OCR token:") else lines[0]
    elif len(lines) == 2:
        question = lines[0]
    else:
        raise ValueError(f"cannot recover the question from prompt {prompt!r}")
    return question.lower()


class TextVQAOptions(ComponentOptions):
    pass


class TextVQABenchmark(Benchmark):
    Options: ClassVar[type[ComponentOptions]] = TextVQAOptions

    def load_items(self, data_dir: Path | None, limit: int | None = None) -> list[EvalItem]:
        root = LAYOUT.root(data_dir)
        questions = read_jsonl(LAYOUT.file(root, QUESTION_FILE), LAYOUT)
        data = read_json(LAYOUT.file(root, ANNOTATION_FILE), LAYOUT)
        images = LAYOUT.folder(root, "train_images")
        index = {(a["image_id"], a["question"].lower()): a for a in data["data"]}
        items = []
        for lineno, q in enumerate(apply_limit(questions, limit), 1):
            try:
                key = (q["question_id"], question_from_prompt(q["text"]))
            except ValueError as exc:
                raise LAYOUT.error(f"{QUESTION_FILE} line {lineno}: {exc}") from exc
            ann = index.get(key)
            if ann is None:
                raise LAYOUT.error(
                    f"{QUESTION_FILE} line {lineno}: no annotation in {ANNOTATION_FILE} for "
                    f"image {key[0]!r} and question {key[1]!r}"
                )
            if len(ann["answers"]) != 10:
                raise LAYOUT.error(
                    f"annotation {ann.get('question_id')} has {len(ann['answers'])} answers, "
                    "the TextVQA scorer needs exactly 10"
                )
            items.append(
                short_answer_item(f"{lineno - 1}", q["question_id"], q["text"], images / q["image"],
                                  answers=list(ann["answers"]))
            )
        return check_images(items, LAYOUT)

    def write_answers(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> list[Path]:
        return [write_llava_answers(Path(out_dir) / "textvqa_answers.jsonl", "textvqa", items, answers)]

    def score(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> BenchmarkResult:
        return score_textvqa(items, answers)


def score_textvqa(items: list[EvalItem], answers: dict[str, str]) -> BenchmarkResult:
    scores = [
        textvqa_accuracy(answers[it.item_id], it.meta["answers"]) for it in items if it.item_id in answers
    ]
    if not scores:
        raise ValueError("textvqa: no answers to score")
    accuracy = 100.0 * (sum(scores) / len(scores))
    metrics: dict[str, Any] = {"accuracy": accuracy, "samples": len(scores), "questions": len(items)}
    table = ScoreTable(
        "TextVQA val (m4c accuracy)", ["samples", "accuracy %"], [[len(scores), round(accuracy, 2)]]
    )
    return BenchmarkResult(metrics=metrics, tables=[table])
