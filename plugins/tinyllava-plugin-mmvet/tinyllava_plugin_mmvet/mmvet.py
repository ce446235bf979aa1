"""MM-Vet: the submission file always, and the official GPT-judge grading when a judge is configured.

`write_answers` writes `mmvet_submission.json` ({"v1_<n>": answer}, what the online evaluator and the
official mm-vet_evaluator.py read). `score` grades every answer with the judge protocol of `judge.py`
and aggregates like the official export: per capability, 100 * mean score of the samples having it,
averaged over runs; `total` over all samples ("MM-Vet" in the paper); `std` over the runs' totals.
Grades are cached in `mmvet_grades.json` (keyed by sample, prediction and judge model), so an
interrupted or repeated scoring does not pay twice.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any, ClassVar

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
from tinyllava_plugin_mmvet.judge import ChatJudge

META_FILE = "mm-vet.json"
SUBMISSION = "mmvet_submission.json"
GRADES = "mmvet_grades.json"
LAYOUT = Layout(
    "mmvet",
    f'  <data>/{META_FILE}        {{"v1_<n>": {{imagename, capability, question, answer}}}}\n'
    "  <data>/images/v1_<n>.png",
    "mm-vet.zip from https://github.com/yuweihao/MM-Vet (releases), unzipped (LLaVA's eval.zip folder "
    "playground/data/eval/mm-vet with mm-vet.json and images/ works as is)",
    subdir="mm-vet",
    marker=META_FILE,
)


class JudgeNotConfiguredError(ValueError):
    """MM-Vet can only be scored by an LLM judge, and none is configured (a configuration error)."""


class MMVetOptions(ComponentOptions):
    judge_url: str | None = Field(
        None,
        description="OpenAI-compatible API base URL (e.g. https://api.openai.com/v1) or its "
        "/chat/completions endpoint; unset = no local score (the submission file is still written)",
    )
    judge_model: str = Field(
        "gpt-4-0613", description="judge model name (the official grader uses gpt-4-0613)"
    )
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="environment variable holding the judge's API key; null = send no key"
    )
    num_runs: int = Field(
        1, ge=1, le=20, description="grading runs per sample (1 by default, 5 in the paper)"
    )
    timeout_s: float = Field(60.0, gt=0, description="seconds per judge request")
    rate_limit_wait_s: float = Field(30.0, ge=0, description="wait after HTTP 429/5xx before regrading")
    max_rate_limit_waits: int = Field(10, ge=0, description="give up after this many waits for one sample")


class MMVetBenchmark(Benchmark):
    Options: ClassVar[type[ComponentOptions]] = MMVetOptions

    def load_items(self, data_dir: Path | None, limit: int | None = None) -> list[EvalItem]:
        root = LAYOUT.root(data_dir)
        meta = read_json(LAYOUT.file(root, META_FILE), LAYOUT)
        images = LAYOUT.folder(root, "images")
        items = []
        for key, sample in apply_limit(list(meta.items()), limit):
            items.append(
                EvalItem(
                    item_id=key,
                    prompt=sample["question"],
                    image=images / sample["imagename"],
                    max_new_tokens=1024,
                    meta={
                        "question_id": _llava_id(key),
                        "question": sample["question"],
                        "answer": sample["answer"],
                        "capability": list(sample["capability"]),
                    },
                )
            )
        return check_images(items, LAYOUT)

    def write_answers(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> list[Path]:
        out_dir = Path(out_dir)
        submission = {it.item_id: answers[it.item_id] for it in items if it.item_id in answers}
        return [
            write_llava_answers(
                out_dir / "mmvet_answers.jsonl", "mmvet", items, answers, lambda it: it.prompt
            ),
            write_json(out_dir / SUBMISSION, submission),
        ]

    # -- judge -------------------------------------------------------------------------------------
    def judge(self) -> ChatJudge:
        """The configured judge, or an error that says how to configure one."""
        o = self.options
        how = (
            "MM-Vet is scored by an LLM judge (the official protocol uses gpt-4-0613). Configure it with the "
            "benchmark options judge_url (an OpenAI-compatible base URL, e.g. https://api.openai.com/v1), "
            "judge_model, and api_key_env (the environment variable holding the key, default OPENAI_API_KEY; "
            f"null for a server without keys). Without a judge, upload {SUBMISSION} to the official online "
            "evaluator (https://huggingface.co/spaces/whyu/MM-Vet_Evaluator)."
        )
        if not o.judge_url:
            raise JudgeNotConfiguredError(f"no judge_url set. {how}")
        key = None
        if o.api_key_env:
            key = os.environ.get(o.api_key_env)
            if not key:
                raise JudgeNotConfiguredError(f"the environment variable {o.api_key_env} is not set. {how}")
        return ChatJudge(
            url=o.judge_url,
            model=o.judge_model,
            api_key=key,
            timeout_s=o.timeout_s,
            rate_limit_wait_s=o.rate_limit_wait_s,
            max_rate_limit_waits=o.max_rate_limit_waits,
        )

    def score(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> BenchmarkResult:
        out_dir = Path(out_dir)
        missing = [it.item_id for it in items if it.item_id not in answers]
        if missing:
            raise ValueError(
                f"mmvet: no answer for {len(missing)} sample(s) (first: {', '.join(missing[:5])}); "
                "the official grader needs a prediction for every sample"
            )
        judge = self.judge()
        grades_path = out_dir / GRADES
        cached = _read_grades(grades_path)
        grades: dict[str, dict[str, Any]] = {}
        runs = self.options.num_runs
        for it in items:
            pred = answers[it.item_id]
            entry = cached.get(it.item_id)
            if not (entry and entry.get("prediction") == pred and entry.get("judge_model") == judge.model):
                entry = {
                    "prediction": pred,
                    "judge_model": judge.model,
                    "model": [],
                    "content": [],
                    "score": [],
                }
            while len(entry["score"]) < runs:
                grade = judge.grade(it.meta["question"], it.meta["answer"], pred)
                entry["model"].append(grade.model)
                entry["content"].append(grade.content)
                entry["score"].append(grade.score)
                grades[it.item_id] = entry
                write_json(grades_path, {**cached, **grades})
            grades[it.item_id] = entry
        write_json(grades_path, {**cached, **grades})
        scores = {k: v["score"][:runs] for k, v in grades.items()}
        result = aggregate(items, scores, runs)
        result.files.append(str(grades_path))
        return result


def _llava_id(key: str) -> Any:
    """LLaVA's llava-mm-vet.jsonl numbers the samples: "v1_12" -> 12."""
    tail = key.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else key


def _read_grades(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def aggregate(items: list[EvalItem], scores: dict[str, list[float]], runs: int) -> BenchmarkResult:
    """Official export: per capability and per capability combination, 100 * sum / count per run, then the
    mean over runs; `std` is the population std of the runs' totals. Unrounded (the tables round to 1)."""
    caps: dict[str, list[float]] = {}
    combos: dict[frozenset[str], list[float]] = {}
    combo_names: dict[frozenset[str], str] = {}
    counts: dict[str, int] = {}
    combo_counts: dict[frozenset[str], int] = {}
    totals = [0.0] * runs
    for it in items:
        cap_list = list(dict.fromkeys(it.meta["capability"]))
        combo = frozenset(cap_list)
        combo_names.setdefault(combo, "_".join(cap_list))
        combo_counts[combo] = combo_counts.get(combo, 0) + 1
        combos.setdefault(combo, [0.0] * runs)
        for c in cap_list:
            caps.setdefault(c, [0.0] * runs)
            counts[c] = counts.get(c, 0) + 1
        for r in range(runs):
            s = scores[it.item_id][r]
            for c in cap_list:
                caps[c][r] += s
            combos[combo][r] += s
            totals[r] += s
    n = len(items)
    run_totals = [t / n * 100 for t in totals] if n else [0.0] * runs
    metrics: dict[str, Any] = {
        "total": statistics.fmean(run_totals),
        "std": statistics.pstdev(run_totals),
        "samples": n,
        "runs": runs,
    }
    order = sorted(caps, key=lambda c: -counts[c])  # most frequent first, like the official columns
    for c in order:
        metrics[f"cap/{c}"] = statistics.fmean(v / counts[c] * 100 for v in caps[c])
    for combo in sorted(combos, key=lambda k: -combo_counts[k]):
        metrics[f"combo/{combo_names[combo]}"] = statistics.fmean(
            v / combo_counts[combo] * 100 for v in combos[combo]
        )
    for r, t in enumerate(run_totals):
        metrics[f"run/{r}/total"] = t
    header = [*order, "total", "std"]
    row = [round(metrics[f"cap/{c}"], 1) for c in order] + [
        round(metrics["total"], 1),
        round(metrics["std"], 1),
    ]
    tables = [ScoreTable(f"MM-Vet (GPT judge, {runs} run(s))", header, [row])]
    return BenchmarkResult(metrics=metrics, tables=tables)
