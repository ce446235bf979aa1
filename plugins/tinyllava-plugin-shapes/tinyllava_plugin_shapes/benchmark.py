"""The `shapes` benchmark: unseen scenes, equal questions per category, exact-match scoring.

Two splits, each with its own table: `main` (scene compositions no training set of the `shapes` dataset can
hold, colour-shape pairs seen in training) and `compositional` (objects whose colour-shape pair training never
showed). The scenes are also checked against the training sets named in `training_sets` (by default the
quickstart's), and the result says how many were checked and how many were found there (0 by construction).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from tinyllava.components.base import ComponentOptions
from tinyllava.components.benchmark import Benchmark, BenchmarkResult, EvalItem, ScoreTable
from tinyllava_plugin_shapes.scenes import (
    BACKGROUNDS,
    CATEGORIES,
    CHANCE,
    COMPOSITIONAL_CATEGORIES,
    HELD_OUT_PAIRS,
    Scene,
    compositional_question,
    draw,
    make_scene,
    question,
)

QUICKSTART_TRAINING_SETS: list[dict[str, Any]] = [
    {"split": "captions", "num_images": 24000},
    {"split": "instruct", "num_images": 16000, "min_rounds": 8, "max_rounds": 8,
     "question_weights": {"colour": 2.0, "shape": 1.5, "count": 0.5, "position": 2.0, "yes/no": 2.0}},
]


class ShapesBenchmarkOptions(ComponentOptions):
    per_category: int = Field(100, ge=1, description="questions per category (main split)")
    compositional_per_category: int | None = Field(
        None, ge=0, description="questions per category of the compositional split (None: per_category; 0: none)")
    image_size: int = Field(64, ge=16)
    seed: int = Field(1_000_003, description="the benchmark's own draw (its compositions are held out anyway)")
    backgrounds: list[Literal["black", "white", "grey", "noise"]] = Field(
        default_factory=lambda: list(BACKGROUNDS), min_length=1, description="backgrounds drawn at random")
    training_sets: list[dict[str, Any]] = Field(
        default_factory=lambda: [dict(s) for s in QUICKSTART_TRAINING_SETS],
        description="`shapes` dataset options of the training sets the scenes are checked against (default: "
        "the quickstart's); [] skips the check",
    )


def normalise(text: str) -> str:
    return text.strip().lower().rstrip(".!").strip()


def training_compositions(training_sets: list[dict[str, Any]]) -> tuple[set, int]:
    """The compositions of every scene in the named training sets (regenerated without drawing) and their count."""
    from tinyllava_plugin_shapes.dataset import ShapesDatasetOptions, build_records

    seen: set = set()
    total = 0
    for options in training_sets:
        scenes: list[Scene] = []
        build_records(ShapesDatasetOptions.model_validate(options), None, scenes)
        seen.update(s.composition() for s in scenes)
        total += len(scenes)
    return seen, total


class ShapesBenchmark(Benchmark):
    Options: ClassVar[type[ComponentOptions]] = ShapesBenchmarkOptions

    def load_items(self, data_dir: Path | None, limit: int | None = None) -> list[EvalItem]:
        # shapes generates its own data: a --data shared with other benchmarks is ignored
        opts: ShapesBenchmarkOptions = self.options  # type: ignore[assignment]
        rng = random.Random(f"shapes-bench-{opts.seed}")
        items = []
        for i in range(opts.per_category):
            for category in CATEGORIES:
                scene = make_scene(rng, opts.image_size, kind="benchmark", backgrounds=opts.backgrounds)
                q, a = question(scene, category, rng)
                items.append(self._item(f"{category}-{i:04d}", q, a, scene, category, "main"))
        comp = opts.per_category if opts.compositional_per_category is None else opts.compositional_per_category
        for i in range(comp):
            for category in COMPOSITIONAL_CATEGORIES:
                scene = make_scene(rng, opts.image_size, kind="compositional", backgrounds=opts.backgrounds)
                q, a = compositional_question(scene, category, rng)
                items.append(self._item(f"compositional-{category}-{i:04d}", q, a, scene, category, "compositional"))
        items = items[:limit] if limit else items
        seen, total = training_compositions(opts.training_sets) if opts.training_sets else (set(), 0)
        found = sum(item.meta["composition"] in seen for item in items)
        for item in items:
            item.meta["checked"] = {"training_scenes": total, "found": found}
        return items

    @staticmethod
    def _item(item_id: str, q: str, a: str, scene: Scene, category: str, split: str) -> EvalItem:
        return EvalItem(item_id=item_id, prompt=q, image=draw(scene), max_new_tokens=8,
                        meta={"category": category, "answer": a, "split": split, "background": scene.background,
                              "composition": scene.composition()})

    def write_answers(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> list[Path]:
        path = Path(out_dir) / "shapes_answers.jsonl"
        with path.open("w") as fh:
            for item in items:
                fh.write(json.dumps({"question_id": item.item_id, "prompt": item.prompt,
                                     "text": answers.get(item.item_id, ""), "answer": item.meta["answer"],
                                     "category": item.meta["category"], "split": item.meta.get("split", "main"),
                                     "background": item.meta.get("background")}) + "\n")
        return [path]

    def score(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> BenchmarkResult:
        hits: dict[tuple[str, str], list[int]] = {}
        by_background: dict[str, list[int]] = {}
        for item in items:
            correct = int(normalise(answers.get(item.item_id, "")) == normalise(item.meta["answer"]))
            split = item.meta.get("split", "main")
            hits.setdefault((split, item.meta["category"]), []).append(correct)
            if split == "main" and item.meta.get("background"):
                by_background.setdefault(item.meta["background"], []).append(correct)
        metrics: dict[str, float] = {}
        tables = [self._table(hits, "main", CATEGORIES, "", "shapes (scenes never in training)", metrics)]
        if any(split == "compositional" for split, _ in hits):
            pairs = ", ".join(f"{c} {s}" for c, s in sorted(HELD_OUT_PAIRS))
            tables.append(self._table(hits, "compositional", COMPOSITIONAL_CATEGORIES, "compositional/",
                                      f"shapes, compositional (colour-shape pairs never in training: {pairs})",
                                      metrics))
        if by_background:
            rows = []
            for name in BACKGROUNDS:
                if name in by_background:
                    acc = sum(by_background[name]) / len(by_background[name])
                    metrics[f"background/{name}/accuracy"] = acc
                    rows.append([name, len(by_background[name]), f"{acc:.3f}"])
            tables.append(ScoreTable("shapes by background (main split)", ["background", "questions", "accuracy"],
                                     rows))
        checked = items[0].meta.get("checked") if items else None
        if checked:
            metrics["scenes/checked"] = len(items)
            metrics["scenes/training_scenes"] = checked["training_scenes"]
            metrics["scenes/found_in_training"] = checked["found"]
            tables.append(ScoreTable("shapes: scenes checked against the training sets",
                                     ["benchmark scenes", "training scenes", "found in training"],
                                     [[len(items), checked["training_scenes"], checked["found"]]]))
        return BenchmarkResult(metrics=metrics, tables=tables)

    @staticmethod
    def _table(hits: dict[tuple[str, str], list[int]], split: str, categories: tuple[str, ...], prefix: str,
               title: str, metrics: dict[str, float]) -> ScoreTable:
        rows = []
        total: list[int] = []
        for category in categories:
            got = hits.get((split, category), [])
            if not got:
                continue
            total += got
            acc = sum(got) / len(got)
            metrics[f"{prefix}{category}/accuracy"] = acc
            metrics[f"{prefix}{category}/chance"] = CHANCE[category]
            rows.append([category, len(got), f"{acc:.3f}", f"{CHANCE[category]:.3f}"])
        metrics[f"{prefix}overall/accuracy"] = sum(total) / len(total) if total else 0.0
        rows.append(["overall", len(total), f"{metrics[f'{prefix}overall/accuracy']:.3f}", ""])
        return ScoreTable(title, ["category", "questions", "accuracy", "chance"], rows)
