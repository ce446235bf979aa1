"""VQAv2: test-dev through an EvalAI submission file (the paper's number), val scored locally.

test-dev: questions come from LLaVA's `llava_vqav2_mscoco_test-dev2015.jsonl`; the submission lists every
question of `llava_vqav2_mscoco_test2015.jsonl` with the EvalAI-processed answer, "" when unanswered
(LLaVA's convert_vqav2_for_submission). The score itself only exists on the EvalAI server.

val: questions and annotations are the official VQA files; each question is scored by the official
vqaEval rule. By default the prediction is first put through EvalAI's processor, i.e. the val results
file holds exactly what a submission would hold (set `evalai_normalize_val: false` for raw text).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from tinyllava.components.base import ComponentOptions
from tinyllava.components.benchmark import Benchmark, BenchmarkResult, EvalItem, ScoreTable
from tinyllava.eval.native_files import (
    Layout,
    apply_limit,
    check_images,
    read_json,
    read_jsonl,
    short_answer_item,
    write_json,
    write_llava_answers,
)
from tinyllava_plugin_vqa.normalize import evalai_normalize, vqa_eval_accuracy

TESTDEV_FILE = "llava_vqav2_mscoco_test-dev2015.jsonl"
TEST_FILE = "llava_vqav2_mscoco_test2015.jsonl"
VAL_QUESTIONS = "v2_OpenEnded_mscoco_val2014_questions.json"
VAL_ANNOTATIONS = "v2_mscoco_val2014_annotations.json"

TESTDEV_LAYOUT = Layout(
    "vqav2 (split test-dev)",
    f"  <data>/{TESTDEV_FILE}   (questions to answer)\n"
    f"  <data>/{TEST_FILE}       (full test list, for a complete submission)\n"
    "  <data>/test2015/COCO_test2015_000000xxxxxx.jpg",
    "LLaVA's eval.zip (playground/data/eval/vqav2, see LLaVA docs/Evaluation.md) plus the COCO "
    "test2015 images from https://visualqa.org/download.html",
    subdir="vqav2",
    marker=TESTDEV_FILE,
)
VAL_LAYOUT = Layout(
    "vqav2 (split val)",
    f"  <data>/{VAL_QUESTIONS}\n  <data>/{VAL_ANNOTATIONS}\n  <data>/val2014/COCO_val2014_000000xxxxxx.jpg",
    "the official VQAv2 questions, annotations and COCO val2014 images from https://visualqa.org/download.html",
    subdir="vqav2",
    marker=VAL_QUESTIONS,
)


class VQAv2Options(ComponentOptions):
    split: Literal["test-dev", "val"] = Field(
        "test-dev", description="test-dev: write the EvalAI submission (paper); val: score locally"
    )
    evalai_normalize_val: bool = Field(
        True, description="val: normalise predictions with EvalAI's processor before the official scorer"
    )


class VQAv2Benchmark(Benchmark):
    Options: ClassVar[type[ComponentOptions]] = VQAv2Options

    def __init__(self, options: ComponentOptions | dict[str, Any] | None = None, *, name: str = "") -> None:
        super().__init__(options, name=name)
        self._full_ids: dict[str, list[Any]] = {}

    # -- loading ---------------------------------------------------------------------------------
    def load_items(self, data_dir: Path | None, limit: int | None = None) -> list[EvalItem]:
        if self.options.split == "val":
            return self._load_val(data_dir, limit)
        return self._load_testdev(data_dir, limit)

    def _load_testdev(self, data_dir: Path | None, limit: int | None) -> list[EvalItem]:
        root = TESTDEV_LAYOUT.root(data_dir)
        questions = read_jsonl(TESTDEV_LAYOUT.file(root, TESTDEV_FILE), TESTDEV_LAYOUT)
        full_list = TESTDEV_LAYOUT.file(root, TEST_FILE)
        images = TESTDEV_LAYOUT.folder(root, "test2015")
        items = [
            short_answer_item(str(q["question_id"]), q["question_id"], q["text"], images / q["image"],
                              submission_list=str(full_list))
            for q in apply_limit(questions, limit)
        ]
        return check_images(items, TESTDEV_LAYOUT)

    def _load_val(self, data_dir: Path | None, limit: int | None) -> list[EvalItem]:
        root = VAL_LAYOUT.root(data_dir)
        qdata = read_json(VAL_LAYOUT.file(root, VAL_QUESTIONS), VAL_LAYOUT)
        adata = read_json(VAL_LAYOUT.file(root, VAL_ANNOTATIONS), VAL_LAYOUT)
        subtype = qdata.get("data_subtype", "val2014")
        images = VAL_LAYOUT.folder(root, subtype)
        annotations = {a["question_id"]: a for a in adata["annotations"]}
        items = []
        for q in apply_limit(qdata["questions"], limit):
            ann = annotations.get(q["question_id"])
            if ann is None:
                raise VAL_LAYOUT.error(f"question {q['question_id']} has no entry in {VAL_ANNOTATIONS}")
            items.append(
                short_answer_item(
                    str(q["question_id"]),
                    q["question_id"],
                    q["question"],
                    images / f"COCO_{subtype}_{int(q['image_id']):012d}.jpg",
                    answers=[a["answer"] for a in ann["answers"]],
                    question_type=ann["question_type"],
                    answer_type=ann["answer_type"],
                )
            )
        return check_images(items, VAL_LAYOUT)

    # -- answers files ---------------------------------------------------------------------------
    def write_answers(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> list[Path]:
        out_dir = Path(out_dir)
        split = self.options.split
        files = [write_llava_answers(out_dir / f"vqav2_{split}_answers.jsonl", "vqav2", items, answers)]
        if split == "test-dev":
            files.append(self._write_submission(items, answers, out_dir))
        else:
            files.append(write_json(out_dir / "vqav2_val_results.json", self._val_results(items, answers)))
        return files

    def _val_prediction(self, text: str) -> str:
        return evalai_normalize(text) if self.options.evalai_normalize_val else text

    def _val_results(self, items: list[EvalItem], answers: dict[str, str]) -> list[dict[str, Any]]:
        """The results array vqaEval's loadRes reads; unanswered questions get "" like the submission."""
        return [
            {
                "question_id": it.meta["question_id"],
                "answer": self._val_prediction(answers.get(it.item_id, "")),
            }
            for it in items
        ]

    def _write_submission(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> Path:
        if not items:
            raise ValueError("vqav2: no items, so no submission list to write")
        full_list = items[0].meta["submission_list"]
        by_id = {str(it.meta["question_id"]): answers[it.item_id] for it in items if it.item_id in answers}
        if full_list not in self._full_ids:  # 447k ids: read once even though answers and score both write
            self._full_ids[full_list] = [
                q["question_id"] for q in read_jsonl(Path(full_list), TESTDEV_LAYOUT)
            ]
        submission = [
            {"question_id": qid, "answer": evalai_normalize(by_id[str(qid)]) if str(qid) in by_id else ""}
            for qid in self._full_ids[full_list]
        ]
        return write_json(out_dir / "vqav2_test-dev_submission.json", submission)

    # -- scoring ---------------------------------------------------------------------------------
    def score(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> BenchmarkResult:
        if self.options.split == "test-dev":
            return self._score_testdev(items, answers, Path(out_dir))
        return score_val(items, answers, self._val_prediction)

    def _score_testdev(
        self, items: list[EvalItem], answers: dict[str, str], out_dir: Path
    ) -> BenchmarkResult:
        path = self._write_submission(items, answers, out_dir)
        answered = sum(1 for it in items if it.item_id in answers)
        metrics = {"questions": len(items), "answered": answered, "submission_file": str(path)}
        table = ScoreTable(
            "VQAv2 test-dev (scored only by the EvalAI server)",
            ["questions", "answered", "upload this file to EvalAI (VQA challenge, test-dev phase)"],
            [[len(items), answered, str(path)]],
        )
        return BenchmarkResult(metrics=metrics, tables=[table], files=[str(path)])


def score_val(
    items: list[EvalItem], answers: dict[str, str], prepare: Callable[[str], str] = evalai_normalize
) -> BenchmarkResult:
    """Official VQA accuracy over the items (percent); an unanswered question is scored as "" (0)."""
    per_question: list[float] = []
    by_qtype: dict[str, list[float]] = defaultdict(list)
    by_atype: dict[str, list[float]] = defaultdict(list)
    for it in items:
        acc = vqa_eval_accuracy(prepare(answers.get(it.item_id, "")), it.meta["answers"])
        per_question.append(acc)
        by_qtype[it.meta["question_type"]].append(acc)
        by_atype[it.meta["answer_type"]].append(acc)

    def pct(values: list[float]) -> float:
        return 100 * float(sum(values)) / len(values) if values else 0.0

    metrics: dict[str, Any] = {"accuracy": pct(per_question)}
    metrics.update({f"answer_type/{t}": pct(v) for t, v in sorted(by_atype.items())})
    metrics.update({f"question_type/{t}": pct(v) for t, v in sorted(by_qtype.items())})
    metrics["questions"] = len(items)
    metrics["answered"] = sum(1 for it in items if it.item_id in answers)
    rows = [["overall", len(per_question), round(metrics["accuracy"], 2)]]
    rows += [[t, len(v), round(pct(v), 2)] for t, v in sorted(by_atype.items())]
    table = ScoreTable("VQAv2 val (official VQA accuracy)", ["answer type", "questions", "accuracy %"], rows)
    return BenchmarkResult(metrics=metrics, tables=[table])
