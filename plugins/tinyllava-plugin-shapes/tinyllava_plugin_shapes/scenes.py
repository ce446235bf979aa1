"""Deterministic scenes of coloured shapes, their captions and question/answer pairs.

Each object sits in its own quadrant, so position, count and "the red shape" are unambiguous.
The background varies (black, white, grey, grey noise) so that a picture a user draws is not out of the
training distribution just for its background.

What is held out of training, whatever the dataset's seed or size (the benchmark relies on it):
- a fixed eighth of all scene compositions (the set of (position, colour, shape) objects; `reserved`): the
  benchmark's main split draws only those, so none of its scenes can appear in any training set;
- three colour-shape pairs (`HELD_OUT_PAIRS`) never drawn together in training: the benchmark's compositional
  split asks about objects of exactly those pairs.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

# Saturated colours whose RGB directions are far apart: a tower's layer norm keeps a patch's colour
# direction but not its brightness, so red (230,30,30) and yellow (240,220,30) looked almost alike.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
}
SHAPES = ("circle", "square", "triangle")
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
COUNT_WORDS = ("1", "2", "3", "4")
CATEGORIES = ("colour", "shape", "count", "position", "yes/no")
BACKGROUNDS: dict[str, tuple[int, int, int] | None] = {
    "black": (0, 0, 0), "white": (255, 255, 255), "grey": (128, 128, 128), "noise": None,  # None: grey noise
}
# each shape and three of the colours lose one partner: every colour and every shape is still seen in training
HELD_OUT_PAIRS: frozenset[tuple[str, str]] = frozenset({("red", "triangle"), ("blue", "circle"), ("yellow", "square")})
RESERVED_ONE_IN = 8  # share of compositions reserved for the benchmark: 1 in 8
SceneKind = Literal["train", "benchmark", "compositional", "any"]
CHANCE = {"colour": 1 / len(COLOURS), "shape": 1 / len(SHAPES), "count": 1 / 4, "position": 1 / 4, "yes/no": 0.5}


@dataclass(frozen=True)
class Thing:
    colour: str
    shape: str
    position: str
    cx: int
    cy: int
    size: int


@dataclass(frozen=True)
class Scene:
    things: tuple[Thing, ...]
    image_size: int
    background: str = "black"
    noise_seed: int = 0

    def composition(self) -> tuple[tuple[str, str, str], ...]:
        """What the scene shows, without pixel details: its objects' (position, colour, shape)."""
        return tuple(sorted((t.position, t.colour, t.shape) for t in self.things))


@functools.lru_cache(maxsize=32768)  # 17,340 compositions in all
def reserved(composition: tuple[tuple[str, str, str], ...]) -> bool:
    """Whether a composition belongs to the benchmark (a fixed hash: the same for every seed and dataset)."""
    key = "|".join(":".join(obj) for obj in sorted(composition))
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % RESERVED_ONE_IN == 0


def has_held_out_pair(scene: Scene) -> bool:
    return any((t.colour, t.shape) in HELD_OUT_PAIRS for t in scene.things)


def fits(scene: Scene, kind: SceneKind) -> bool:
    """train: neither a reserved composition nor a held-out pair; benchmark: reserved, no held-out pair;
    compositional: at least one held-out pair (so never a training composition); any: everything."""
    if kind == "any":
        return True
    if kind == "compositional":
        return has_held_out_pair(scene)
    if has_held_out_pair(scene):
        return False
    return reserved(scene.composition()) == (kind == "benchmark")


def make_scene(rng: random.Random, image_size: int, max_objects: int = 4, kind: SceneKind = "any",
               backgrounds: Sequence[str] = ("black",)) -> Scene:
    """A random scene of `kind`: the count first (uniform over 1..max_objects), then objects until they fit."""
    count = rng.randint(1, max_objects)
    while True:
        scene = _draw_scene(rng, image_size, count, backgrounds)
        if fits(scene, kind):
            return scene


def _draw_scene(rng: random.Random, image_size: int, count: int, backgrounds: Sequence[str]) -> Scene:
    quadrants = rng.sample(range(4), count)
    colours = rng.sample(list(COLOURS), count)
    half = image_size // 2
    things = []
    for quadrant, colour in zip(quadrants, colours, strict=True):
        # big shapes near the quadrant centre: a patch then sees a consistent part of the outline
        size = rng.randint(int(half * 0.6), int(half * 0.85))
        jitter = max(1, half // 12)
        qx, qy = (quadrant % 2) * half, (quadrant // 2) * half
        cx = qx + half // 2 + rng.randint(-jitter, jitter)
        cy = qy + half // 2 + rng.randint(-jitter, jitter)
        things.append(Thing(colour, rng.choice(SHAPES), POSITIONS[quadrant], cx, cy, size))
    background = rng.choice(list(backgrounds))
    noise_seed = rng.getrandbits(32) if background == "noise" else 0
    return Scene(tuple(sorted(things, key=lambda t: POSITIONS.index(t.position))), image_size, background, noise_seed)


def draw(scene: Scene) -> Any:
    from PIL import Image, ImageDraw

    size = (scene.image_size, scene.image_size)
    fill = BACKGROUNDS[scene.background]
    if fill is None:  # grey noise: every pixel its own grey level, no colour of its own
        noise = random.Random(scene.noise_seed).randbytes(size[0] * size[1])
        image = Image.frombytes("L", size, noise).convert("RGB")
    else:
        image = Image.new("RGB", size, fill)
    pen = ImageDraw.Draw(image)
    for t in scene.things:
        r = t.size // 2
        box = (t.cx - r, t.cy - r, t.cx + r, t.cy + r)
        fill = COLOURS[t.colour]
        if t.shape == "circle":
            pen.ellipse(box, fill=fill)
        elif t.shape == "square":
            pen.rectangle(box, fill=fill)
        else:
            pen.polygon([(t.cx, t.cy - r), (t.cx - r, t.cy + r), (t.cx + r, t.cy + r)], fill=fill)
    return image


def caption(scene: Scene, position_first: bool = False, order: Sequence[int] | None = None) -> str:
    """Describe every object. Position-first captions ("At the top left, a red circle.") teach looking an
    object up by where it is; attribute-first ones ("A red circle at the top left.") teach the reverse.
    `order` (indices into scene.things) shuffles the objects: in reading order a captioner can just scan
    the picture, in a random order every word after the first of an object must be looked up by it."""
    things = [scene.things[i] for i in order] if order is not None else list(scene.things)
    if position_first:
        parts = [f"at the {t.position}, a {t.colour} {t.shape}" for t in things]
    else:
        parts = [f"a {t.colour} {t.shape} at the {t.position}" for t in things]
    text = " and ".join(parts) + "."
    return text[0].upper() + text[1:]


def question(scene: Scene, category: str, rng: random.Random) -> tuple[str, str]:
    """One (question, answer) of a category about a scene."""
    thing = rng.choice(scene.things)
    if category == "colour":
        return f"What colour is the shape at the {thing.position}?", thing.colour
    if category == "shape":
        return f"What shape is the {thing.colour} object?", thing.shape
    if category == "count":
        return "How many shapes are there?", COUNT_WORDS[len(scene.things) - 1]
    if category == "position":
        return f"Where is the {thing.colour} {thing.shape}?", thing.position
    if category == "yes/no":
        return yes_no(scene, rng)
    raise ValueError(f"unknown category {category!r}")


COMPOSITIONAL_CATEGORIES = ("colour", "shape", "position", "yes/no")  # counting needs no colour-shape binding


def compositional_question(scene: Scene, category: str, rng: random.Random) -> tuple[str, str]:
    """A question about an object of a held-out colour-shape pair (the scene must have one)."""
    thing = rng.choice([t for t in scene.things if (t.colour, t.shape) in HELD_OUT_PAIRS])
    if category == "yes/no":
        present = {(t.colour, t.shape) for t in scene.things}
        absent = sorted(HELD_OUT_PAIRS - present)
        if absent and rng.random() < 0.5:
            colour, shape = rng.choice(absent)
            return f"Is there a {colour} {shape}?", "no"
        return f"Is there a {thing.colour} {thing.shape}?", "yes"
    if category == "colour":
        return f"What colour is the shape at the {thing.position}?", thing.colour
    if category == "shape":
        return f"What shape is the {thing.colour} object?", thing.shape
    if category == "position":
        return f"Where is the {thing.colour} {thing.shape}?", thing.position
    raise ValueError(f"unknown compositional category {category!r}")


def yes_no(scene: Scene, rng: random.Random) -> tuple[str, str]:
    want_yes = rng.random() < 0.5
    present = {(t.colour, t.shape) for t in scene.things}
    kind = rng.choice(("colour", "shape", "both"))
    if kind == "colour":
        have = {c for c, _ in present}
        pool = sorted(have) if want_yes else sorted(set(COLOURS) - have)
        if pool:
            return f"Is there a {rng.choice(pool)} shape?", "yes" if want_yes else "no"
    elif kind == "shape":
        have = {s for _, s in present}
        pool = sorted(have) if want_yes else sorted(set(SHAPES) - have)
        if pool:
            return f"Is there a {rng.choice(pool)}?", "yes" if want_yes else "no"
    all_pairs = {(c, s) for c in COLOURS for s in SHAPES} - HELD_OUT_PAIRS  # never asked: "no" would be a giveaway
    pool_pairs = sorted(present) if want_yes else sorted(all_pairs - present)
    colour, shape = rng.choice(pool_pairs)
    return f"Is there a {colour} {shape}?", "yes" if want_yes else "no"


TEXT_ONLY = [
    ("How many sides does a triangle have?", "3"),
    ("How many sides does a square have?", "4"),
    ("Does a circle have corners?", "no"),
    ("Which shapes can appear in the pictures?", "circles, squares and triangles"),
    ("Is yellow a colour?", "yes"),
]


def vocabulary() -> list[str]:
    """Text the tiny tokenizer should learn merges from."""
    words = list(COLOURS) + list(SHAPES) + list(POSITIONS)
    return words + [
        "What colour is the shape at the", "What shape is the", "object?", "How many shapes are there?",
        "Where is the", "Is there a", "shape?", " at the ", " and ", *[q for q, _ in TEXT_ONLY],
    ]
