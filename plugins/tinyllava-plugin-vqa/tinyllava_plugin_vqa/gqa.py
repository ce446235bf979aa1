"""GQA testdev-balanced, scored like the official eval.py after LLaVA's converter.

LLaVA's convert_gqa_for_eval turns each answer into `text.rstrip('.').lower()` (only trailing periods go;
spaces and newlines stay), and eval.py counts an exact, case-sensitive match with the gold `answer`.
The reported number is `accuracy`. Validity, plausibility, grounding and consistency are not computed
(LLaVA's patched script disables the first three; they need scene graphs and choices files).
"""

from __future__ import annotations

from collections import defaultdict
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
    require_answers,
    short_answer_item,
    write_json,
    write_llava_answers,
)

QUESTION_FILE = "llava_gqa_testdev_balanced.jsonl"
OFFICIAL_QUESTIONS = "testdev_balanced_questions.json"
LAYOUT = Layout(
    "gqa",
    f"  <data>/{QUESTION_FILE}\n"
    f"  <data>/data/{OFFICIAL_QUESTIONS}   (or <data>/{OFFICIAL_QUESTIONS})\n"
    "  <data>/data/images/<imageId>.jpg      (or <data>/images/)",
    "LLaVA's eval.zip (playground/data/eval/gqa) for the question file; testdev_balanced_questions.json "
    "and the images from https://cs.stanford.edu/people/dorarad/gqa/download.html",
    subdir="gqa",
    marker=QUESTION_FILE,
)
# Semantic operations that do not count as a reasoning step (eval.py's getStepsNum).
_NOT_A_STEP = ("exist", "query: name", "choose name")


def gqa_prediction(text: str) -> str:
    """LLaVA's converter: strip trailing periods only, then lower-case."""
    return text.rstrip(".").lower()


def steps_number(semantic: list[dict[str, Any]]) -> int:
    return sum(
        1
        for op in semantic
        if not any(word in f"{op['operation']}: {op['argument']}" for word in _NOT_A_STEP)
    )


class GQAOptions(ComponentOptions):
    pass


class GQABenchmark(Benchmark):
    Options: ClassVar[type[ComponentOptions]] = GQAOptions

    def load_items(self, data_dir: Path | None, limit: int | None = None) -> list[EvalItem]:
        root = LAYOUT.root(data_dir)
        questions = read_jsonl(LAYOUT.file(root, QUESTION_FILE), LAYOUT)
        official = read_json(LAYOUT.file(root, f"data/{OFFICIAL_QUESTIONS}", OFFICIAL_QUESTIONS), LAYOUT)
        images = LAYOUT.folder(root, "data/images", "images")
        items = []
        for q in apply_limit(questions, limit):
            qid = str(q["question_id"])
            gold = official.get(qid)
            if gold is None:
                raise LAYOUT.error(f"question {qid} of {QUESTION_FILE} is not in {OFFICIAL_QUESTIONS}")
            items.append(
                short_answer_item(
                    qid,
                    q["question_id"],
                    q["text"],
                    images / q["image"],
                    answer=gold["answer"],
                    balanced=bool(gold.get("isBalanced", True)),
                    structural=gold["types"]["structural"],
                    semantic=gold["types"]["semantic"],
                    words=len(gold["question"].split()),
                    steps=steps_number(gold.get("semantic", [])),
                    global_group=(gold.get("groups") or {}).get("global"),
                )
            )
        return check_images(items, LAYOUT)

    def write_answers(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> list[Path]:
        out_dir = Path(out_dir)
        predictions = [
            {"questionId": it.item_id, "prediction": gqa_prediction(answers[it.item_id])}
            for it in items
            if it.item_id in answers
        ]
        return [
            write_llava_answers(out_dir / "gqa_answers.jsonl", "gqa", items, answers),
            write_json(out_dir / "testdev_balanced_predictions.json", predictions),
        ]

    def score(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> BenchmarkResult:
        return score_gqa(items, answers)


def score_gqa(items: list[EvalItem], answers: dict[str, str]) -> BenchmarkResult:
    """eval.py's metrics over the balanced items (percent); a missing prediction is an error, as there."""
    require_answers(items, answers, "gqa: missing predictions for",
                    "the official eval.py refuses to score without a prediction for every question")
    acc: list[float] = []
    kind: dict[str, list[float]] = {"binary": [], "open": []}
    groups: dict[str, dict[str, list[float]]] = {
        k: defaultdict(list) for k in ("structural", "semantic", "steps", "words")
    }
    gold_dist: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    pred_dist: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for it in items:
        m = it.meta
        if not m["balanced"]:
            continue
        predicted = gqa_prediction(answers[it.item_id])
        score = 1.0 if predicted == m["answer"] else 0.0
        acc.append(score)
        kind["open" if m["structural"] == "query" else "binary"].append(score)
        for key in groups:
            groups[key][str(m[key])].append(score)
        if m["global_group"] is not None:
            gold_dist[m["global_group"]][m["answer"]] += 1
            pred_dist[m["global_group"]][predicted] += 1

    def pct(values: list[float]) -> float:
        return float(sum(values)) / len(values) * 100 if values else 0.0

    metrics: dict[str, Any] = {"accuracy": pct(acc), "binary": pct(kind["binary"]), "open": pct(kind["open"])}
    distribution = chi_square(gold_dist, pred_dist)
    if distribution is not None:
        metrics["distribution"] = distribution / 100
    for key, per in groups.items():
        for name in sorted(per, key=_natural):
            metrics[f"{key}/{name}"] = pct(per[name])
    metrics["questions"] = len(acc)
    rows = [
        ["Binary", len(kind["binary"]), round(metrics["binary"], 2)],
        ["Open", len(kind["open"]), round(metrics["open"], 2)],
        ["Accuracy", len(acc), round(metrics["accuracy"], 2)],
    ]
    if "distribution" in metrics:
        rows.append(["Distribution (lower is better)", len(acc), round(metrics["distribution"], 2)])
    tables = [ScoreTable("GQA testdev-balanced", ["metric", "questions", "score"], rows)]
    for key, title in (("structural", "structural type"), ("semantic", "semantic type")):
        tables.append(
            ScoreTable(
                f"GQA accuracy / {title}",
                [title, "questions", "accuracy %"],
                [[n, len(v), round(pct(v), 2)] for n, v in sorted(groups[key].items())],
            )
        )
    return BenchmarkResult(metrics=metrics, tables=tables)


def chi_square(gold: dict[str, dict[str, int]], predicted: dict[str, dict[str, int]]) -> float | None:
    """eval.py's distribution score: per-group chi-square, weighted by group size (None without groups)."""
    total_score, total = 0.0, 0
    for group, answers in gold.items():
        score, overall = 0.0, 0
        for ans, expected in answers.items():
            observed = predicted[group].get(ans, 0)
            score += float(observed - expected) ** 2 / expected
            overall += expected
        total_score += score * overall
        total += overall
    return float(total_score) / total if total else None


def _natural(name: str) -> tuple[int, Any]:
    return (0, int(name)) if name.isdigit() else (1, name)
