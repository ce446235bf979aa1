"""The `shapes` benchmark: held-out scenes, equal questions per category, exact-match scoring."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from tinyllava.components.base import ComponentOptions
from tinyllava.components.benchmark import Benchmark, BenchmarkResult, EvalItem, ScoreTable
from tinyllava_plugin_shapes.scenes import CATEGORIES, CHANCE, draw, make_scene, question


class ShapesBenchmarkOptions(ComponentOptions):
    per_category: int = Field(100, ge=1, description="questions per category")
    image_size: int = Field(64, ge=16)
    seed: int = Field(1_000_003, description="held out: training data uses other seeds")


def normalise(text: str) -> str:
    return text.strip().lower().rstrip(".!").strip()


class ShapesBenchmark(Benchmark):
    Options: ClassVar[type[ComponentOptions]] = ShapesBenchmarkOptions

    def load_items(self, data_dir: Path | None, limit: int | None = None) -> list[EvalItem]:
        # shapes generates its own data: a --data shared with other benchmarks is ignored
        opts: ShapesBenchmarkOptions = self.options  # type: ignore[assignment]
        rng = random.Random(f"shapes-bench-{opts.seed}")
        items = []
        for i in range(opts.per_category):
            for category in CATEGORIES:
                scene = make_scene(rng, opts.image_size)
                q, a = question(scene, category, rng)
                items.append(EvalItem(
                    item_id=f"{category}-{i:04d}", prompt=q, image=draw(scene), max_new_tokens=8,
                    meta={"category": category, "answer": a},
                ))
        return items[:limit] if limit else items

    def write_answers(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> list[Path]:
        path = Path(out_dir) / "shapes_answers.jsonl"
        with path.open("w") as fh:
            for item in items:
                fh.write(json.dumps({"question_id": item.item_id, "prompt": item.prompt,
                                     "text": answers.get(item.item_id, ""), "answer": item.meta["answer"],
                                     "category": item.meta["category"]}) + "\n")
        return [path]

    def score(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> BenchmarkResult:
        per: dict[str, list[int]] = {c: [] for c in CATEGORIES}
        for item in items:
            correct = normalise(answers.get(item.item_id, "")) == normalise(item.meta["answer"])
            per[item.meta["category"]].append(int(correct))
        metrics: dict[str, float] = {}
        rows = []
        total = [x for v in per.values() for x in v]
        for category, hits in per.items():
            if not hits:
                continue
            acc = sum(hits) / len(hits)
            metrics[f"{category}/accuracy"] = acc
            metrics[f"{category}/chance"] = CHANCE[category]
            rows.append([category, len(hits), f"{acc:.3f}", f"{CHANCE[category]:.3f}"])
        metrics["overall/accuracy"] = sum(total) / len(total) if total else 0.0
        rows.append(["overall", len(total), f"{metrics['overall/accuracy']:.3f}", ""])
        table = ScoreTable("shapes", ["category", "questions", "accuracy", "chance"], rows)
        return BenchmarkResult(metrics=metrics, tables=[table])
