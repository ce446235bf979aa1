"""MME, scored like LLaVA's convert_answer_to_mme.py followed by the official eval_tool/calculation.py.

Quirks kept on purpose:
- calculation.py reads each answer with the line's trailing newline still attached, so an exact "yes"/"no"
  never matches and the answer is read from its first 4 characters (lower-cased): "yes" in them -> yes,
  else "no" in them -> no, else "other" (always wrong). So "know", "none", "Not sure" read as no, "y",
  "The answer is yes" and "" as other.
- acc+ pairs answers by adjacent lines of a subtask (two per image), which is the image pairing when the
  answers follow the question file.
- a task's score is acc*100 + acc+*100 (max 200); perception sums 10 tasks (the number LLaVA-1.5 and
  TinyLLaVA report), cognition 4.
A tab or newline in an answer would break the official text files; they are written (and read here)
as spaces, which changes nothing unless one sits in the first 4 characters.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, ClassVar

from tinyllava.components.base import ComponentOptions
from tinyllava.components.benchmark import Benchmark, BenchmarkResult, EvalItem, ScoreTable
from tinyllava.eval.native_files import (
    SHORT_ANSWER,
    Layout,
    check_images,
    read_jsonl,
    require_answers,
    short_answer_item,
    write_llava_answers,
)

QUESTION_FILE = "llava_mme.jsonl"
RELEASE = "MME_Benchmark_release_version"
PERCEPTION = (
    "existence",
    "count",
    "position",
    "color",
    "posters",
    "celebrity",
    "scene",
    "landmark",
    "artwork",
    "OCR",
)
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
YES_NO = " Please answer yes or no."
LAYOUT = Layout(
    "mme",
    f"  <data>/{QUESTION_FILE}\n"
    f"  <data>/{RELEASE}/<task>/<image>.jpg|png + <image>.txt              (flat tasks, e.g. existence)\n"
    f"  <data>/{RELEASE}/<task>/images/<image>.jpg + questions_answers_YN/<image>.txt  (artwork, celebrity,"
    " landmark, posters, scene)",
    "LLaVA's eval.zip (playground/data/eval/MME) for llava_mme.jsonl; MME_Benchmark_release_version from the "
    "MME authors (https://github.com/BradyFU/Awesome-Multimodal-Large-Language-Models/tree/Evaluation)",
    subdir="MME",
    marker=QUESTION_FILE,
)


def read_ground_truth(release: Path) -> dict[tuple[str, str, str], str]:
    """(task, txt file name, question) -> "Yes"/"No", from every task folder's question files."""
    gt: dict[tuple[str, str, str], str] = {}
    for task_dir in sorted(p for p in release.iterdir() if p.is_dir()):
        qa_dir = task_dir / "questions_answers_YN" if (task_dir / "images").is_dir() else task_dir
        if not qa_dir.is_dir():
            raise LAYOUT.error(f"{task_dir} has images/ but no questions_answers_YN/")
        for txt in sorted(qa_dir.glob("*.txt")):
            for line in txt.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                parts = line.strip().split("\t")
                if len(parts) != 2:
                    raise LAYOUT.error(f"{txt}: expected 'question<TAB>answer' lines, got {line!r}")
                gt[(task_dir.name, txt.name, parts[0])] = parts[1]
    return gt


def gt_question(prompt: str, task: str, file: str, gt: dict[tuple[str, str, str], str]) -> str:
    """The converter's way back from a LLaVA prompt to the MME question (single, then double space)."""
    if SHORT_ANSWER in prompt:
        prompt = prompt.replace(SHORT_ANSWER, "").strip()
    if "Please answer yes or no." not in prompt:
        prompt = prompt + YES_NO
        if (task, file, prompt) not in gt:
            prompt = prompt.replace(YES_NO, " " + YES_NO)
    return prompt


def file_line_answer(text: str) -> str:
    """The answer as it sits in the official per-task text file (tabs and line breaks become spaces)."""
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def parse_pred(pred: str) -> str:
    """calculation.py's parse_pred_ans on an already lower-cased answer."""
    if pred in ("yes", "no"):
        return pred
    prefix = pred[:4]
    if "yes" in prefix:
        return "yes"
    if "no" in prefix:
        return "no"
    return "other"


def task_metrics(gts: list[str], texts: list[str]) -> dict[str, Any]:
    """One task from its answers in file order: two adjacent lines per image."""
    if len(gts) % 2:
        raise ValueError(f"{len(gts)} answers: calculation.py needs the two answers of every image")
    preds = [parse_pred((file_line_answer(t) + "\n").lower()) for t in texts]
    gts = [g.lower() for g in gts]
    bad = [g for g in gts if g not in ("yes", "no")]
    if bad:
        raise ValueError(f"ground-truth answers must be yes/no, got {bad[0]!r}")
    correct = [g == p for g, p in zip(gts, preds, strict=True)]
    images = len(gts) // 2
    both = sum(1 for i in range(images) if correct[2 * i] and correct[2 * i + 1])
    acc = sum(correct) / len(correct)
    acc_plus = both / images
    kept = [(g, p) for g, p in zip(gts, preds, strict=True) if p != "other"]
    tp = sum(1 for g, p in kept if g == "yes" and p == "yes")
    fp = sum(1 for g, p in kept if g == "no" and p == "yes")
    fn = sum(1 for g, p in kept if g == "yes" and p == "no")
    tn = sum(1 for g, p in kept if g == "no" and p == "no")
    score = 0.0
    score += acc * 100
    score += acc_plus * 100
    return {
        "score": score,
        "acc": acc * 100,
        "acc_plus": acc_plus * 100,
        "other": len(preds) - len(kept),
        "precision": 100 * tp / (tp + fp) if tp + fp else 0.0,
        "recall": 100 * tp / (tp + fn) if tp + fn else 0.0,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "images": images,
    }


class MMEOptions(ComponentOptions):
    pass


class MMEBenchmark(Benchmark):
    Options: ClassVar[type[ComponentOptions]] = MMEOptions

    def load_items(self, data_dir: Path | None, limit: int | None = None) -> list[EvalItem]:
        """All questions of llava_mme.jsonl; `limit` is rounded up so that the last image keeps both
        of its questions (acc+ needs the pair)."""
        root = LAYOUT.root(data_dir)
        questions = read_jsonl(LAYOUT.file(root, QUESTION_FILE), LAYOUT)
        release = LAYOUT.folder(root, RELEASE)
        gt = read_ground_truth(release)
        if limit is not None:
            end = max(limit, 0)
            while (
                0 < end < len(questions)
                and questions[end]["question_id"] == questions[end - 1]["question_id"]
            ):
                end += 1
            questions = questions[:end]
        seen: Counter[str] = Counter()
        items = []
        for q in questions:
            qid = str(q["question_id"])
            task = qid.split("/")[0]
            file = qid.split("/")[-1].split(".")[0] + ".txt"
            question = gt_question(q["text"], task, file, gt)
            if (task, file, question) not in gt:
                raise LAYOUT.error(f"no ground truth for {qid!r} question {question!r} in {RELEASE}/{task}")
            items.append(
                short_answer_item(f"{qid}#{seen[qid]}", q["question_id"], q["text"], release / q["image"],
                                  task=task, file=file, question=question, gt=gt[(task, file, question)])
            )
            seen[qid] += 1
        return check_images(items, LAYOUT)

    def write_answers(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> list[Path]:
        """LLaVA's answers file plus the per-task files calculation.py reads (--results_dir mme_results)."""
        out_dir = Path(out_dir)
        files = [write_llava_answers(out_dir / "mme_answers.jsonl", "mme", items, answers)]
        per_task: dict[str, list[str]] = defaultdict(list)
        for it in items:
            if it.item_id in answers:
                m = it.meta
                text = file_line_answer(answers[it.item_id])
                per_task[m["task"]].append("\t".join((m["file"], m["question"], m["gt"], text)) + "\n")
        results = out_dir / "mme_results"
        results.mkdir(parents=True, exist_ok=True)
        for task, lines in per_task.items():
            path = results / f"{task}.txt"
            path.write_text("".join(lines), encoding="utf-8")
            files.append(path)
        return files

    def score(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> BenchmarkResult:
        return score_mme(items, answers)


def score_mme(items: list[EvalItem], answers: dict[str, str]) -> BenchmarkResult:
    require_answers(items, answers, "mme: no answer for",
                    "calculation.py pairs the two answers of every image, so every question needs an answer")
    by_task: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for it in items:
        gts, texts = by_task[it.meta["task"]]
        gts.append(it.meta["gt"])
        texts.append(answers[it.item_id])
    per: dict[str, dict[str, Any]] = {}
    for task in (*PERCEPTION, *COGNITION):
        if task in by_task:
            try:
                per[task] = task_metrics(*by_task[task])
            except ValueError as exc:
                raise ValueError(f"mme task {task}: {exc}") from exc
    metrics: dict[str, Any] = {}
    tables = []
    for group, tasks in (("perception", PERCEPTION), ("cognition", COGNITION)):
        total = 0.0
        for task in tasks:
            if task in per:
                total += per[task]["score"]
        metrics[group] = total
        rows = [
            [
                t,
                per[t]["images"],
                round(per[t]["acc"], 2),
                round(per[t]["acc_plus"], 2),
                round(per[t]["score"], 2),
            ]
            for t in tasks
            if t in per
        ]
        rows.append(["total", sum(per[t]["images"] for t in tasks if t in per), "", "", round(total, 2)])
        tables.append(ScoreTable(f"MME {group}", ["task", "images", "acc", "acc+", "score"], rows))
    metrics["tasks_scored"] = len(per)
    for task, m in per.items():
        metrics.update({f"{task}/{k}": v for k, v in m.items()})
    return BenchmarkResult(metrics=metrics, tables=tables)
