"""POPE (COCO adversarial / popular / random), scored like TinyLLaVA's eval_pope.py.

eval_pope.py pairs the answers of a category, in answers-file order, with the labels of
`coco_pope_<category>.json`, in line order. Here the pairing is made once at load time in the same way
(k-th question of a category in the question file <-> k-th label line), so scoring never depends on the
order answers arrive in. Because the official pairing is positional, every question needs an answer:
a missing one is an error rather than a silent shift of all later labels.

Reading an answer (the official rule, case-sensitive): keep the text before the first ".", delete ",",
split on single spaces; "No", "no" or "not" among the words means no, anything else (including "",
"NO", "Nope", "No!") means yes. Precision, recall and F1 carry the 1e-6 guards of TinyLLaVA's version.
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
    read_jsonl,
    require_answers,
    short_answer_item,
    write_llava_answers,
)

QUESTION_FILE = "llava_pope_test.jsonl"
LAYOUT = Layout(
    "pope",
    f"  <data>/{QUESTION_FILE}\n"
    "  <data>/coco/coco_pope_adversarial.json   (JSON lines with a 'label' per question)\n"
    "  <data>/coco/coco_pope_popular.json\n"
    "  <data>/coco/coco_pope_random.json\n"
    "  <data>/val2014/COCO_val2014_000000xxxxxx.jpg",
    "LLaVA's eval.zip (playground/data/eval/pope) for the question file; the coco/ annotation files from "
    "https://github.com/AoiDragon/POPE/tree/e3e39262c85a6a83f26cf5094022a782cb0df58d/output/coco; "
    "COCO val2014 images from https://cocodataset.org",
    subdir="pope",
    marker=QUESTION_FILE,
)
EPS = 1e-6
METRICS = ("f1", "accuracy", "precision", "recall", "yes_ratio")


def pope_answer(text: str) -> str:
    """'yes' or 'no', read exactly as eval_pope.py reads it."""
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def pope_metrics(predictions: list[str], labels: list[str]) -> dict[str, Any]:
    """Counts and rates for one category (rates in percent). As in eval_pope.py, a prediction or label is
    negative only when it is exactly "no"."""
    pairs = [(p != "no", g != "no") for p, g in zip(predictions, labels, strict=True)]
    tp = sum(1 for p, g in pairs if p and g)
    fp = sum(1 for p, g in pairs if p and not g)
    tn = sum(1 for p, g in pairs if not p and not g)
    fn = sum(1 for p, g in pairs if not p and g)
    precision = float(tp) / float(tp + fp + EPS)
    recall = float(tp) / float(tp + fn + EPS)
    f1 = 2 * precision * recall / (precision + recall + EPS)
    accuracy = (tp + tn) / (tp + tn + fp + fn)
    yes_ratio = sum(1 for p, _ in pairs if p) / len(pairs)
    return {
        "f1": 100 * f1,
        "accuracy": 100 * accuracy,
        "precision": 100 * precision,
        "recall": 100 * recall,
        "yes_ratio": 100 * yes_ratio,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "samples": len(predictions),
    }


class POPEOptions(ComponentOptions):
    pass


class POPEBenchmark(Benchmark):
    Options: ClassVar[type[ComponentOptions]] = POPEOptions

    def load_items(self, data_dir: Path | None, limit: int | None = None) -> list[EvalItem]:
        root = LAYOUT.root(data_dir)
        questions = read_jsonl(LAYOUT.file(root, QUESTION_FILE), LAYOUT)
        ann_dir = LAYOUT.folder(root, "coco")
        images = LAYOUT.folder(root, "val2014")
        label_files = sorted(ann_dir.glob("coco_pope_*.json"))
        if not label_files:
            raise LAYOUT.error(f"no coco_pope_<category>.json files in {ann_dir}")
        labels = {
            f.name[len("coco_pope_") : -len(".json")]: [r["label"] for r in read_jsonl(f, LAYOUT)]
            for f in label_files
        }
        by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for q in questions:
            by_category[q["category"]].append(q)
        for category, rows in by_category.items():
            if category not in labels:
                raise LAYOUT.error(
                    f"questions of category {category!r} but no coco/coco_pope_{category}.json"
                )
            if len(rows) != len(labels[category]):
                raise LAYOUT.error(
                    f"{len(rows)} questions of category {category!r} in {QUESTION_FILE} but "
                    f"{len(labels[category])} labels in coco/coco_pope_{category}.json; they pair by position"
                )
            for q, label in zip(rows, labels[category], strict=True):
                q["_label"] = label
        items = [
            short_answer_item(str(q["question_id"]), q["question_id"], q["text"], images / q["image"],
                              category=q["category"], label=q["_label"])
            for q in apply_limit(questions, limit)
        ]
        return check_images(items, LAYOUT)

    def write_answers(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> list[Path]:
        return [write_llava_answers(Path(out_dir) / "pope_answers.jsonl", "pope", items, answers)]

    def score(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> BenchmarkResult:
        return score_pope(items, answers)


def score_pope(items: list[EvalItem], answers: dict[str, str]) -> BenchmarkResult:
    """Per-category metrics and their mean; the unprefixed metrics are the means (`f1` is the headline)."""
    require_answers(items, answers, "pope: no answer for",
                    "eval_pope.py pairs answers with labels by position, so every question needs an answer")
    grouped: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for it in items:
        preds, labels = grouped[it.meta["category"]]
        preds.append(pope_answer(answers[it.item_id]))
        labels.append(it.meta["label"])
    per = {cat: pope_metrics(*grouped[cat]) for cat in sorted(grouped)}
    metrics: dict[str, Any] = {
        name: sum(m[name] for m in per.values()) / len(per) if per else 0.0 for name in METRICS
    }
    for cat, m in per.items():
        metrics.update({f"{cat}/{k}": v for k, v in m.items()})
    rows = [
        [cat, m["samples"], *(round(m[k], 2) for k in METRICS), f"{m['tp']}/{m['fp']}/{m['tn']}/{m['fn']}"]
        for cat, m in per.items()
    ]
    rows.append(
        ["mean", sum(m["samples"] for m in per.values()), *(round(metrics[k], 2) for k in METRICS), ""]
    )
    table = ScoreTable(
        "POPE (positive = yes)",
        ["split", "samples", "F1 %", "accuracy %", "precision %", "recall %", "yes ratio %", "TP/FP/TN/FN"],
        rows,
    )
    return BenchmarkResult(metrics=metrics, tables=[table])
