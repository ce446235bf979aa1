"""Draw the README's example pictures of the `shapes` world: `python docs/make_shapes_examples.py`.

- `docs/shapes-example.png`: one scene at the size the quickstart model sees (64 px), ready for
  `tinyllava chat --image docs/shapes-example.png`;
- `docs/shapes-backgrounds.png`: one training-style scene on each background (black, white, grey, noise),
  each with its caption, enlarged 3x.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw
from tinyllava_plugin_shapes.scenes import BACKGROUNDS, Scene, Thing, caption, draw, make_scene

HERE = Path(__file__).resolve().parent


def main() -> None:
    example = Scene((Thing("red", "circle", "top left", 16, 17, 22), Thing("green", "square", "top right", 47, 16, 20),
                     Thing("cyan", "triangle", "bottom right", 48, 47, 22)), 64, "white")
    draw(example).save(HERE / "shapes-example.png")
    rng = random.Random(7)
    scale, pad, text_h = 3, 12, 64
    scenes = [make_scene(rng, 64, kind="train", backgrounds=[name]) for name in BACKGROUNDS]
    sheet = Image.new("RGB", (len(scenes) * (64 * scale + pad) + pad, 64 * scale + 2 * pad + text_h), "white")
    pen = ImageDraw.Draw(sheet)
    for i, scene in enumerate(scenes):
        x = pad + i * (64 * scale + pad)
        sheet.paste(draw(scene).resize((64 * scale, 64 * scale), Image.NEAREST), (x, pad))
        pen.rectangle((x - 1, pad - 1, x + 64 * scale, pad + 64 * scale), outline="grey")  # white on white
        words = f"{scene.background}: {caption(scene)}".split()
        lines, line = [], ""
        for word in words:  # wrap the caption under its picture
            if len(line) + len(word) > 30:
                lines.append(line)
                line = ""
            line = f"{line} {word}".strip()
        pen.multiline_text((x, 64 * scale + pad + 4), "\n".join([*lines, line]), fill="black")
    sheet.save(HERE / "shapes-backgrounds.png")


if __name__ == "__main__":
    main()
