"""MMMU validation (900 questions), following TinyLLaVA's model_vqa_mmmu.py and MMMU's main_eval_only.py.

Pipeline kept: a multiple-choice answer is turned into a letter with MMMU's parser (TinyLLaVA does this at
generation time, so the answers file holds the letter); an open answer is kept as text and parsed with
parse_open_response at evaluation. Accuracy per subject, per discipline and overall; the discipline and
overall numbers are instance-weighted. Questions whose options are images have no single image: TinyLLaVA
does not run the model on them but answers a random option (multiple choice) or the string
"INVALID GENERATION FOR MULTIPLE IMAGE INPUTS" (open); `no_image_policy` keeps that (default) or scores
the model's text-only answer instead.
"""

from __future__ import annotations

import random
from collections import defaultdict
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
    write_json,
    write_llava_answers,
)
from tinyllava_plugin_mmmu.parsing import (
    eval_multi_choice,
    eval_open,
    parse_multi_choice,
    parse_open_response,
    question_seed,
)

QUESTION_FILE = "anns_for_eval.json"
ANSWER_FILE = "answer_dict_val.json"
MC_SUFFIX = "Answer with the option's letter from the given choices directly."
OPEN_SUFFIX = "Answer the question using a single word or phrase."
INVALID = "INVALID GENERATION FOR MULTIPLE IMAGE INPUTS"
DISCIPLINES: dict[str, tuple[str, ...]] = {
    "Art and Design": ("Art", "Art_Theory", "Design", "Music"),
    "Business": ("Accounting", "Economics", "Finance", "Manage", "Marketing"),
    "Science": ("Biology", "Chemistry", "Geography", "Math", "Physics"),
    "Health and Medicine": (
        "Basic_Medical_Science",
        "Clinical_Medicine",
        "Diagnostics_and_Laboratory_Medicine",
        "Pharmacy",
        "Public_Health",
    ),
    "Humanities and Social Science": ("History", "Literature", "Sociology", "Psychology"),
    "Tech and Engineering": (
        "Agriculture",
        "Architecture_and_Engineering",
        "Computer_Science",
        "Electronics",
        "Energy_and_Power",
        "Materials",
        "Mechanical_Engineering",
    ),
}
SUBJECTS = frozenset(s for subjects in DISCIPLINES.values() for s in subjects)
LAYOUT = Layout(
    "mmmu",
    f"  <data>/{QUESTION_FILE}\n  <data>/eval/{ANSWER_FILE}   (or <data>/{ANSWER_FILE})\n"
    "  <data>/all_images/<image>",
    "TinyLLaVA Factory's MMMU.zip (see its docs: Evaluation / MMMU), which packs anns_for_eval.json, "
    "all_images/ and the official MMMU eval/ folder (answer_dict_val.json from "
    "https://github.com/MMMU-Benchmark/MMMU/tree/main/eval)",
    subdir="MMMU",
    marker=QUESTION_FILE,
)


def subject_of(question_id: str) -> str:
    """main_eval_only's grouping: validation_<Subject>_<n> -> <Subject>."""
    return "_".join(question_id.split("_")[1:-1])


def with_mmmu_suffix(prompt: str, question_type: str) -> str:
    suffix = MC_SUFFIX if question_type == "multiple-choice" else OPEN_SUFFIX
    if prompt.rstrip().endswith(suffix):
        return prompt
    return f"{prompt}\n\n{suffix}" if question_type == "multiple-choice" else f"{prompt}\n{suffix}"


class MMMUOptions(ComponentOptions):
    seed: int = Field(
        42, description="mixed into the per-question seed of the random multiple-choice fallback"
    )
    no_image_policy: Literal["tinyllava", "text_only"] = Field(
        "tinyllava",
        description="questions without a single image: TinyLLaVA's fallback answers (tinyllava) or the "
        "model's text-only answer (text_only)",
    )


class MMMUBenchmark(Benchmark):
    Options: ClassVar[type[ComponentOptions]] = MMMUOptions

    def load_items(self, data_dir: Path | None, limit: int | None = None) -> list[EvalItem]:
        root = LAYOUT.root(data_dir)
        questions = read_json(LAYOUT.file(root, QUESTION_FILE), LAYOUT)
        gold = read_json(LAYOUT.file(root, f"eval/{ANSWER_FILE}", ANSWER_FILE), LAYOUT)
        images = LAYOUT.folder(root, "all_images")
        fallback = self.options.no_image_policy == "tinyllava"
        items = []
        for q in apply_limit(questions, limit):
            qid = str(q["id"])
            if qid not in gold:
                raise LAYOUT.error(f"question {qid} of {QUESTION_FILE} has no entry in {ANSWER_FILE}")
            has_image = bool(q.get("image"))
            items.append(
                EvalItem(
                    item_id=qid,
                    prompt=with_mmmu_suffix(q["prompt"], q["question_type"]),
                    image=images / q["image"] if has_image else None,
                    # TinyLLaVA never asks the model about these: its answer is ignored, keep it short
                    max_new_tokens=1024 if has_image or not fallback else 1,
                    meta={
                        "question_id": qid,
                        "question_type": q["question_type"],
                        "all_choices": list(q.get("all_choices") or []),
                        "index2ans": dict(q.get("index2ans") or {}),
                        "has_image": has_image,
                        "gold_type": gold[qid]["question_type"],
                        "gold": gold[qid]["ground_truth"],
                    },
                )
            )
        return check_images(items, LAYOUT)

    # -- what TinyLLaVA's answers file would hold ------------------------------------------------
    def prediction(self, item: EvalItem, answers: dict[str, str]) -> str | None:
        """The answers-file text of one question (a letter for multiple choice), None if unanswered."""
        m = item.meta
        rng = random.Random(question_seed(item.item_id, self.options.seed))
        if not m["has_image"] and self.options.no_image_policy == "tinyllava":
            raw = rng.choice(m["all_choices"]) if m["question_type"] == "multiple-choice" else INVALID
        elif item.item_id in answers:
            raw = answers[item.item_id]
        else:
            return None
        if m["question_type"] == "multiple-choice":
            return parse_multi_choice(raw, m["all_choices"], m["index2ans"], rng)
        return raw

    def predictions(self, items: list[EvalItem], answers: dict[str, str]) -> dict[str, str]:
        out = {}
        for it in items:
            pred = self.prediction(it, answers)
            if pred is not None:
                out[it.item_id] = pred
        return out

    def write_answers(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> list[Path]:
        """The answers .jsonl (text = parsed letter / raw open answer) and the {id: text} file that
        main_eval_only.py --output_path reads."""
        out_dir = Path(out_dir)
        preds = self.predictions(items, answers)
        return [
            write_llava_answers(out_dir / "mmmu_answers.jsonl", "mmmu", items, preds, lambda it: it.prompt),
            write_json(out_dir / "mmmu_output.json", preds),
        ]

    def score(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> BenchmarkResult:
        return score_mmmu(items, self.predictions(items, answers))


def score_mmmu(items: list[EvalItem], predictions: dict[str, str]) -> BenchmarkResult:
    """main_eval_only.py: only predicted questions of the 30 subjects are evaluated (percentages)."""
    per_subject: dict[str, list[bool]] = defaultdict(list)
    for it in items:
        subject = subject_of(it.item_id)
        if it.item_id not in predictions or subject not in SUBJECTS:
            continue
        pred = predictions[it.item_id]
        gold = it.meta["gold"]
        if it.meta["gold_type"] == "multiple-choice":
            right = eval_multi_choice(gold, pred)
        else:
            right = eval_open(gold, parse_open_response(pred))
        per_subject[subject].append(right)
    acc = {s: sum(v) / len(v) for s, v in per_subject.items()}
    num = {s: len(v) for s, v in per_subject.items()}

    def weighted(subjects: list[str]) -> float:
        total = sum(num[s] for s in subjects)
        return sum(acc[s] * num[s] for s in subjects) / total if total else 0.0

    metrics: dict[str, Any] = {
        "overall": 100 * weighted(list(acc)),
        "evaluated": sum(num.values()),
        "questions": len(items),
    }
    rows: list[list[Any]] = []
    for discipline, subjects in DISCIPLINES.items():
        present = [s for s in subjects if s in acc]
        metrics[f"discipline/{discipline}"] = 100 * weighted(present)
        rows.append([f"Overall-{discipline}", sum(num[s] for s in present), round(weighted(present), 3)])
        for s in present:
            metrics[f"subject/{s}"] = 100 * acc[s]
            metrics[f"subject/{s}/num"] = num[s]
            rows.append([f"  {s}", num[s], round(acc[s], 3)])
    rows.append(["Overall", metrics["evaluated"], round(metrics["overall"] / 100, 3)])
    table = ScoreTable("MMMU val (official acc, 0-1)", ["subject", "num", "acc"], rows)
    return BenchmarkResult(metrics=metrics, tables=[table])
