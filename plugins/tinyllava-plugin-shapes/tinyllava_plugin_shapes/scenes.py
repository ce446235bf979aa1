"""Deterministic scenes of coloured shapes, their captions and question/answer pairs.

Each object sits in its own quadrant, so position, count and "the red shape" are unambiguous.
The background is black, so with mean 0 normalisation it maps to 0.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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


def make_scene(rng: random.Random, image_size: int, max_objects: int = 4) -> Scene:
    count = rng.randint(1, max_objects)
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
    return Scene(tuple(sorted(things, key=lambda t: POSITIONS.index(t.position))), image_size)


def draw(scene: Scene) -> Any:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (scene.image_size, scene.image_size), (0, 0, 0))
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
    all_pairs = {(c, s) for c in COLOURS for s in SHAPES}
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
