"""The `shapes` dataset: LLaVA-format captions (stage 1) or multi-turn instructions (stage 2), on disk."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from tinyllava.components.base import ComponentOptions
from tinyllava.components.dataset import Dataset
from tinyllava_plugin_shapes.scenes import (
    BACKGROUNDS,
    CATEGORIES,
    TEXT_ONLY,
    Scene,
    caption,
    draw,
    make_scene,
    question,
)

# look-ups by position (colour questions) and checks of every object (yes/no) are the hardest to learn; counting
# is learnt from few examples
QUESTION_WEIGHTS = {"colour": 2.0, "shape": 1.5, "count": 0.5, "position": 1.0, "yes/no": 2.0}


class ShapesDatasetOptions(ComponentOptions):
    split: Literal["captions", "instruct"] = "instruct"
    num_images: int = Field(4000, ge=1)
    image_size: int = Field(64, ge=16)
    seed: int = 0
    max_rounds: int = Field(3, ge=1, description="question/answer rounds per conversation (min_rounds..max)")
    min_rounds: int = Field(
        1, ge=1, description="fewest rounds per conversation: equal lengths waste no padding in a batch"
    )
    text_only_fraction: float = Field(0.05, ge=0, le=1, description="share of text-only conversations")
    caption_order: Literal["shuffled", "reading"] = Field(
        "shuffled", description="objects in a caption: a random order (teaches looking objects up) or reading order"
    )
    position_first_fraction: float = Field(
        0.5, ge=0, le=1, description='share of captions that name the place first ("At the top left, a red '
        'circle"): they teach looking an object up by where it is, the others by what it looks like',
    )
    max_objects: int = Field(4, ge=1, le=4, description="objects per picture: 1..max (fewer: an easier curriculum)")
    backgrounds: list[Literal["black", "white", "grey", "noise"]] = Field(
        default_factory=lambda: list(BACKGROUNDS), min_length=1,
        description="backgrounds drawn at random, one a picture (grey noise: every pixel its own grey level)",
    )
    held_out: bool = Field(
        True, description="leave out the benchmark's scenes (a fixed eighth of all compositions) and the held-out "
        "colour-shape pairs; false: any scene (then the shapes benchmark no longer measures unseen scenes)",
    )
    question_weights: dict[str, float] = Field(
        default_factory=lambda: dict(QUESTION_WEIGHTS),
        description="relative share of each question category in split instruct; a category left out is not asked",
    )

    @field_validator("question_weights")
    @classmethod
    def _known_categories(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(CATEGORIES))
        if unknown:
            raise ValueError(f"unknown question categories {unknown}; the categories are {list(CATEGORIES)}")
        if any(w < 0 for w in value.values()) or not any(w > 0 for w in value.values()):
            raise ValueError("question weights must be >= 0 with at least one above 0")
        return value

    @model_validator(mode="after")
    def _rounds_in_order(self) -> ShapesDatasetOptions:
        if self.min_rounds > self.max_rounds:
            raise ValueError(f"min_rounds ({self.min_rounds}) is above max_rounds ({self.max_rounds}); "
                             f"lower min_rounds or raise max_rounds")
        return self


def build_records(opts: ShapesDatasetOptions, image_dir: Path | None,
                  scenes: list[Scene] | None = None) -> list[dict]:
    """The records (and, with `image_dir`, their pictures); `scenes` collects every scene drawn."""
    rng = random.Random(f"shapes-{opts.seed}-{opts.split}")
    records = []
    categories, weights = list(opts.question_weights), list(opts.question_weights.values())
    for i in range(opts.num_images):
        rid = f"shapes-{opts.split}-{i:06d}"
        if opts.split == "instruct" and rng.random() < opts.text_only_fraction:
            q, a = rng.choice(TEXT_ONLY)
            records.append({"id": rid, "conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]})
            continue
        scene = make_scene(rng, opts.image_size, opts.max_objects, "train" if opts.held_out else "any",
                           opts.backgrounds)
        if scenes is not None:
            scenes.append(scene)
        name = f"{i:06d}.png"
        if image_dir is not None:
            draw(scene).save(image_dir / name)
        if opts.split == "captions":
            order = list(range(len(scene.things)))
            if opts.caption_order == "shuffled":
                rng.shuffle(order)
            position_first = rng.random() < opts.position_first_fraction
            convs = [{"from": "human", "value": "<image>\nDescribe the picture."},
                     {"from": "gpt", "value": caption(scene, position_first=position_first, order=order)}]
        else:
            convs = []
            for r in range(rng.randint(opts.min_rounds, opts.max_rounds)):
                q, a = question(scene, rng.choices(categories, weights)[0], rng)
                if r == 0:
                    q = f"<image>\n{q}" if rng.random() < 0.5 else f"{q}\n<image>"
                convs += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
        records.append({"id": rid, "image": name, "conversations": convs})
    return records


class ShapesDataset(Dataset):
    Options: ClassVar[type[ComponentOptions]] = ShapesDatasetOptions

    def materialize(self, cache_root: Path) -> tuple[Path, Path]:
        opts: ShapesDatasetOptions = self.options  # type: ignore[assignment]
        key = hashlib.sha256(opts.model_dump_json().encode()).hexdigest()[:12]
        folder = Path(cache_root) / f"shapes-{opts.split}-{key}"
        data_file, image_dir, done = folder / "data.json", folder / "images", folder / ".complete"
        if done.is_file():
            return data_file, image_dir
        image_dir.mkdir(parents=True, exist_ok=True)
        records = build_records(opts, image_dir)
        data_file.write_text(json.dumps(records, indent=1))
        done.write_text("ok\n")
        return data_file, image_dir


__all__ = ["CATEGORIES", "ShapesDataset", "build_records"]
