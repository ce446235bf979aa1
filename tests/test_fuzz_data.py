"""Fuzzed training data: every case trains correctly or is a one-line error naming the record and the field.

Families: image files (every PIL mode we meet, EXIF orientations, animations, truncations, garbage, decompression
bombs), records (hypothesis mutations of valid records: wrong types, missing fields, unknown roles, `<image>`
counts, huge texts, odd ids), data files (non-UTF-8, invalid JSON, JSON Lines, wrong top level) and a few end-to-end
`tinyllava train` runs. Each case goes through the same validation the runner uses (`load_records`, with
`on_bad_record: skip`); an accepted record must then tokenise, load its image and give a finite loss in a forward
pass of a tiny model. Run with `-s` for the table; the counts are also written to fuzz-data.json (see
tinyllava.testing.fuzz).
"""

from __future__ import annotations

import io
import itertools
import json
import math
import random
import re
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tinyllava.data.records import DataError, load_records, record_id
from tinyllava.testing.fuzz import FuzzTally

TALLY = FuzzTally("data")
FIELD = re.compile(r"^record (\S.*?): (\(record\)|\(line\)|id|image|conversations(\[\d+\](\.from|\.value)?)?): \S")
HYPOTHESIS = settings(max_examples=200, derandomize=True, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))


_CASES = itertools.count()


class Refused(Exception):
    """A record reported as bad; the message is the problem line."""


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    import torch

    from tinyllava.model.build import build_fresh
    from tinyllava.plugins.registry import get_registry
    from tinyllava.spec.runspec import ModelSpec
    from tinyllava.testing import TINY_MODEL

    torch.manual_seed(0)
    registry = get_registry()
    built = build_fresh(registry, ModelSpec.model_validate(TINY_MODEL))
    template = registry.create("chat_template", "llama", {})
    root = tmp_path_factory.mktemp("fuzzroot")
    return built, template, root


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    TALLY.report()
    assert TALLY.total("traceback") == 0 and TALLY.total("silent drop") == 0, "\n".join(TALLY.failures)


def _trains(parts, record: dict, root: Path) -> None:
    """The record tokenises, its image loads and one forward pass gives a finite loss (or it is reported as left out
    after truncation)."""
    import torch

    from tinyllava.data.dataset import Collator, SupervisedDataset

    built, template, _ = parts
    model = built.model
    ds = SupervisedDataset([record], root, template, built.tokenizer, built.image_processor,
                           model.config.image_seq_len, 128, "square")
    if len(ds) == 0:
        if not ds.untrainable:
            raise AssertionError("accepted, then neither trained nor reported")  # a silent drop
        raise Refused(f"record {record.get('id')}: conversations: no trained token left after truncation")
    item = ds[0]
    if record.get("image") is not None:
        assert item["pixel_values"].shape == (3, 32, 32) and torch.isfinite(item["pixel_values"]).all()
    batch = Collator(built.tokenizer.pad_token_id, image_seq_len=model.config.image_seq_len)([item])
    with torch.no_grad():
        loss = model(**batch).loss
    assert math.isfinite(float(loss)), "the loss is not finite"


def _one(parts, family: str, records: list, root: Path, rid: str, *, suffix: str = ".json", raw: bytes | None = None,
         max_pixels: int | None = None, label: str = "") -> str:
    """Write `records` (or `raw` bytes) to a data file, validate with skip, and classify the case for `rid`."""
    folder = root / f"case{next(_CASES)}"
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"data{suffix}"
    data.write_bytes(raw if raw is not None else json.dumps(records).encode())
    expected = len(records)

    def case() -> None:
        checked = load_records(data, root, "skip", max_pixels=max_pixels)
        named = [p for p in checked.problems if p.record_id == rid]
        if rid.startswith(("#", "line ")):  # no id of its own: the record without one
            kept = [r for r in checked.records if "id" not in r]
        else:
            kept = [r for r in checked.records if record_id(0, r) == rid]
        if len(checked.records) + len(checked.problems) != expected:
            raise AssertionError(f"{expected} records in, {len(checked.records)} kept + {len(checked.problems)} "
                                 f"reported")
        if named:
            line = str(named[0])
            if not FIELD.match(line):
                raise AssertionError(f"problem does not name the record and field: {line!r}")
            raise Refused(line)
        if not kept:
            raise AssertionError(f"record {rid} neither kept nor reported")
        _trains(parts, kept[0], root)

    return TALLY.run(family, case, (Refused, DataError), label=label or rid)


def _good_text(rid: str = "anchor") -> dict:
    return {"id": rid, "conversations": [{"from": "human", "value": "What shape?"},
                                         {"from": "gpt", "value": "a red circle"}]}


def _with_image(rid: str, image: str) -> dict:
    return {"id": rid, "image": image,
            "conversations": [{"from": "human", "value": "<image>\nWhat shape?"}, {"from": "gpt", "value": "circle"}]}


# -- image files ------------------------------------------------------------------------------------------------


def _png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _bomb_png(width: int, height: int) -> bytes:
    """A small valid PNG whose header claims width x height (never decoded if the check works)."""
    data = bytearray(_png_bytes(Image.new("L", (8, 8))))
    ihdr = bytearray(data[12:29])
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def _image_files() -> list[tuple[str, bytes | None, bool]]:
    """(name, bytes or None for a directory, expected usable)."""
    rng = random.Random(0)
    gradient = Image.linear_gradient("L").resize((40, 24))
    rgb = Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gradient))
    files: list[tuple[str, bytes | None, bool]] = []

    def save(name: str, img: Image.Image, fmt: str, **kw) -> None:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kw)
        files.append((name, buf.getvalue(), True))

    save("rgb.png", rgb, "PNG")
    save("rgb.jpg", rgb, "JPEG")
    save("grey.png", rgb.convert("L"), "PNG")
    save("bilevel.png", rgb.convert("1"), "PNG")
    save("cmyk.jpg", rgb.convert("CMYK"), "JPEG")
    save("la.png", rgb.convert("LA"), "PNG")
    save("palette.png", rgb.convert("P"), "PNG")
    pal = rgb.convert("P")
    save("palette-transparent.png", pal, "PNG", transparency=0)
    save("rgba.png", rgb.convert("RGBA"), "PNG")
    save("grey16.png", Image.fromarray(__import__("numpy").asarray(gradient, dtype="uint16") * 257), "PNG")
    save("int32.tiff", rgb.convert("I"), "TIFF")
    save("float.tiff", rgb.convert("F"), "TIFF")
    save("rgb.webp", rgb, "WEBP")
    save("rgb.bmp", rgb, "BMP")
    save("one-pixel.png", Image.new("RGB", (1, 1), (9, 9, 9)), "PNG")
    save("thin.png", Image.new("RGB", (3, 300), (1, 2, 3)), "PNG")
    save("png-named.jpg", rgb, "PNG")
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        save(f"exif-{orientation}.jpg", rgb, "JPEG", exif=exif.tobytes())
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    save("animated.gif", frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    save("animated.png", frames[0], "PNG", save_all=True, append_images=frames[1:])
    files.append(("zero-bytes.png", b"", False))
    files.append(("text.png", b"this is not an image\n", False))
    for i in range(6):
        files.append((f"noise-{i}.png", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))), False))
    files.append(("bomb.png", _bomb_png(100_000, 100_000), False))
    files.append(("bomb-wide.png", _bomb_png(2_000_000, 40), False))
    files.append(("a-directory.png", None, False))
    return files


def test_fuzz_image_files(parts):
    _, _, root = parts
    for name, content, usable in _image_files():
        path = root / "images" / name
        path.parent.mkdir(exist_ok=True)
        if content is None:
            path.mkdir(exist_ok=True)
        else:
            path.write_bytes(content)
        outcome = _one(parts, "image files", [_with_image(name, f"images/{name}"), _good_text()], root, name)
        assert outcome == ("ok" if usable else "clean error"), (name, outcome, TALLY.failures[-1:])
    missing = _one(parts, "image files", [_with_image("missing", "images/nope.png"), _good_text()], root, "missing")
    assert missing == "clean error"


def test_exif_orientation_and_animation_are_what_a_viewer_shows(parts):
    from tinyllava.data.images import open_image

    _, _, root = parts
    rgb = Image.new("RGB", (40, 24), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", exif=exif.tobytes())
    assert open_image(io.BytesIO(buf.getvalue())).size == (24, 40)
    grey16 = Image.fromarray(__import__("numpy").full((4, 4), 65535, dtype="uint16"))
    assert open_image(grey16).getpixel((0, 0)) == (255, 255, 255)
    half = Image.fromarray(__import__("numpy").full((4, 4), 32768, dtype="uint16"))
    assert open_image(half).getpixel((0, 0)) == (128, 128, 128)  # scaled, not clipped to white


@given(cut=st.floats(min_value=0.05, max_value=0.97), fmt=st.sampled_from(["PNG", "JPEG", "GIF", "WEBP", "TIFF"]))
@settings(HYPOTHESIS, max_examples=40)
def test_fuzz_truncated_images(parts, cut, fmt):
    """A file cut short anywhere is either still a decodable image or a clean problem, never a crash later."""
    _, _, root = parts
    img = Image.effect_noise((48, 48), 60).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    data = buf.getvalue()[: max(1, int(len(buf.getvalue()) * cut))]
    name = f"cut-{fmt}-{cut:.6f}.img"
    (root / "images").mkdir(exist_ok=True)
    (root / "images" / name).write_bytes(data)
    _one(parts, "image files (truncated)", [_with_image(name, f"images/{name}"), _good_text()], root, name)


def test_max_image_pixels_is_configurable(parts):
    _, _, root = parts
    (root / "images").mkdir(exist_ok=True)
    Image.new("RGB", (40, 40)).save(root / "images" / "forty.png")
    records = [_with_image("forty", "images/forty.png"), _good_text()]
    assert _one(parts, "image files", records, root, "forty", max_pixels=1000) == "clean error"
    assert "more than max_image_pixels=1,000" in _first_problem(root, records, 1000)
    assert _one(parts, "image files", records, root, "forty", max_pixels=1600) == "ok"


def _first_problem(root: Path, records: list, max_pixels: int) -> str:
    (root / "limit.json").write_text(json.dumps(records))
    return str(load_records(root / "limit.json", root, "skip", max_pixels=max_pixels).problems[0])


# -- records ------------------------------------------------------------------------------------------------------

ANY_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**12), st.floats(allow_nan=True),
                      st.text(max_size=20), st.lists(st.integers(), max_size=3),
                      st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
ROLES = st.sampled_from(["human", "gpt", "system", "user", "assistant", "HUMAN", "", "gpt ", "🤖"])
IDS = st.one_of(st.text(min_size=1, max_size=30), st.integers(0, 10**6), st.just("x" * 300),
                st.just("a\nb\tc\x00"), st.just("ü-😀"), ANY_VALUE)


@st.composite
def mutated_record(draw):
    record = _with_image("r", "images/base.png") if draw(st.booleans()) else _good_text("r")
    record = json.loads(json.dumps(record))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["drop-key", "key-type", "id", "turn-drop-key", "turn-role", "turn-value-type",
                                     "turns-empty", "turn-not-object", "extra-turn", "swap-turns", "image-tags",
                                     "huge-text", "unicode-text", "image-field"]))
        convs = record.get("conversations")
        turns = convs if isinstance(convs, list) else None
        if kind == "drop-key":
            record.pop(draw(st.sampled_from(["id", "image", "conversations"])), None)
        elif kind == "key-type":
            record[draw(st.sampled_from(["image", "conversations"]))] = draw(ANY_VALUE)
        elif kind == "id":
            record["id"] = draw(IDS)
        elif kind == "turns-empty":
            record["conversations"] = []
        elif kind == "image-field":
            record["image"] = draw(st.sampled_from(["", "   ", "images/base.png", "images/none.png", "images"]))
        elif turns:
            t = draw(st.integers(0, len(turns) - 1))
            turn = turns[t]
            if kind == "turn-not-object":
                turns[t] = draw(ANY_VALUE)
            elif not isinstance(turn, dict):
                continue
            elif kind == "turn-drop-key":
                turn.pop(draw(st.sampled_from(["from", "value"])), None)
            elif kind == "turn-role":
                turn["from"] = draw(ROLES)
            elif kind == "turn-value-type":
                turn["value"] = draw(ANY_VALUE)
            elif kind == "extra-turn":
                turns.append({"from": draw(ROLES), "value": draw(st.text(max_size=20))})
            elif kind == "swap-turns" and len(turns) > 1:
                turns.reverse()
            elif kind == "image-tags" and isinstance(turn.get("value"), str):
                turn["value"] += " <image>" * draw(st.integers(0, 3))
            elif kind == "huge-text" and isinstance(turn.get("value"), str):
                turn["value"] = "many words " * draw(st.integers(2_000, 30_000))
            elif kind == "unicode-text" and isinstance(turn.get("value"), str):
                turn["value"] = draw(st.text(max_size=40))
    return record


@given(record=mutated_record())
@settings(HYPOTHESIS)
def test_fuzz_records(parts, record):
    _, _, root = parts
    if not (root / "images" / "base.png").exists():
        (root / "images").mkdir(exist_ok=True)
        Image.new("RGB", (32, 32), (0, 128, 255)).save(root / "images" / "base.png")
    rid = record_id(0, record)
    anchor = _good_text("anchor-" + str(random.random()))
    _one(parts, "records", [record, anchor], root, rid, label=json.dumps(record, default=str)[:200])


# -- data files -------------------------------------------------------------------------------------------------


def _file_case(parts, label: str, raw: bytes, suffix: str = ".json", rid: str = "anchor", expect: str | None = None):
    _, _, root = parts
    try:
        records = json.loads(raw.decode("utf-8-sig"))
        n = len(records) if isinstance(records, list) else 1
    except (ValueError, UnicodeDecodeError):
        n = None
    if n is None or suffix == ".jsonl":
        n = sum(1 for line in raw.decode("utf-8", "replace").splitlines() if line.strip())
    outcome = _one(parts, "data files", [None] * n, root, rid, suffix=suffix, raw=raw, label=label)
    if expect is not None:
        assert outcome == expect, (label, outcome, TALLY.failures[-1:])


def test_fuzz_data_files(parts):
    good = [_good_text("anchor"), _good_text("second")]
    text = json.dumps(good)
    _file_case(parts, "plain", text.encode(), expect="ok")
    _file_case(parts, "utf-8 BOM", b"\xef\xbb\xbf" + text.encode(), expect="ok")
    _file_case(parts, "latin-1", text.replace("circle", "caf\u00e9").encode("latin-1"), expect="clean error")
    _file_case(parts, "utf-16", text.encode("utf-16"), expect="clean error")
    _file_case(parts, "empty file", b"", expect="clean error")
    _file_case(parts, "empty list", b"[]", expect="clean error")
    for top in (b"{}", b"3", b'"records"', b"null", b"true", b'{"data": []}'):
        _file_case(parts, f"top level {top!r}", top, expect="clean error")
    lines = "\n".join(json.dumps(r) for r in good)
    _file_case(parts, "jsonl", lines.encode(), suffix=".jsonl", expect="ok")
    _file_case(parts, "jsonl in a .json file", lines.encode(), expect="ok")
    _file_case(parts, "jsonl with blank lines", ("\n\n" + lines + "\n\n").encode(), suffix=".jsonl", expect="ok")
    broken = lines + "\n{\"id\": \"half\", \"conversations\": [\n" + json.dumps(_good_text("third"))
    _file_case(parts, "jsonl with a broken line", broken.encode(), suffix=".jsonl", rid="line 3",
               expect="clean error")
    no_ids = "\n".join(json.dumps({"conversations": r["conversations"]}) for r in good) + "\n[1, 2]"
    _file_case(parts, "jsonl without ids", no_ids.encode(), suffix=".jsonl", rid="line 3", expect="clean error")


@given(cut=st.integers(1, 400))
@settings(HYPOTHESIS, max_examples=30)
def test_fuzz_truncated_json(parts, cut):
    text = json.dumps([_good_text("anchor"), _good_text("second"), _with_image("img", "images/base.png")])
    _file_case(parts, f"cut at {cut}", text.encode()[:cut])


@given(raw=st.binary(min_size=1, max_size=200))
@settings(HYPOTHESIS, max_examples=30)
def test_fuzz_random_bytes_as_data(parts, raw):
    _file_case(parts, f"bytes {raw[:20]!r}", raw)


# -- end to end -------------------------------------------------------------------------------------------------


def test_train_on_a_mixed_file_skips_exactly_the_bad_records(tmp_path):
    """Odd but valid images train; every bad record is named (stop) or counted (skip), through `tinyllava train`."""
    import yaml
    from typer.testing import CliRunner

    from tinyllava.testing import tiny_run_spec
    from tinyllava_cli.app import app

    images = tmp_path / "img"
    images.mkdir()
    files = dict((name, content) for name, content, _ in _image_files() if content is not None)
    good_names = ["cmyk.jpg", "la.png", "palette-transparent.png", "grey16.png", "exif-6.jpg", "animated.gif",
                  "float.tiff", "rgb.png"]
    bad = {"zero": ("zero-bytes.png", "image"), "bomb": ("bomb.png", "image"), "noise": ("noise-0.png", "image")}
    for name in good_names + [b[0] for b in bad.values()]:
        (images / name).write_bytes(files[name])
    records = [_with_image(f"ok-{n}", n) for n in good_names]
    records += [_with_image(rid, name) for rid, (name, _) in bad.items()]
    records.append({"id": "role", "conversations": [{"from": "system", "value": "x"}, {"from": "gpt", "value": "y"}]})
    records.append({"id": "tags", "image": "rgb.png", "conversations": [{"from": "human", "value": "<image><image>"},
                                                                        {"from": "gpt", "value": "y"}]})
    records.append({"id": "untagged", "image": "rgb.png", "conversations": _good_text()["conversations"]})
    records.append({"id": "empty", "conversations": []})
    bad_ids = [*bad, "role", "tags", "untagged", "empty"]
    lines = [json.dumps(r) for r in records] + ["{not json"]
    (tmp_path / "data.jsonl").write_text("\n".join(lines))
    raw = tiny_run_spec(tmp_path / "runs", steps=1)
    raw["stages"] = raw["stages"][1:]
    raw["stages"][0]["data"] = {"json_path": str(tmp_path / "data.jsonl"), "image_root": str(images)}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    stop = CliRunner().invoke(app, ["train", str(tmp_path / "s.yaml")])
    message = stop.stderr
    assert stop.exit_code == 2 and "Traceback" not in stop.output, stop.output
    for rid in bad_ids + [f"line {len(lines)}"]:
        ok = f"record {rid}:" in message
        TALLY.add("end to end (train)", "clean error" if ok else "silent drop", rid)
    skip = CliRunner().invoke(app, ["train", str(tmp_path / "s.yaml"), "--set", "stages.0.data.on_bad_record=skip",
                                    "--set", "name=skip"])
    assert skip.exit_code == 0, skip.output
    assert f"skipped {len(bad_ids) + 1} bad record(s)" in " ".join(skip.stdout.split())
    for _ in good_names:
        TALLY.add("end to end (train)", "ok")


def test_an_image_broken_after_the_check_is_a_clean_error_in_training(parts):
    """Checked, then damaged before its batch: a DataError naming the file (the CLI prints it), not a traceback."""
    from tinyllava.data.dataset import SupervisedDataset

    built, template, root = parts
    (root / "images").mkdir(exist_ok=True)
    Image.new("RGB", (32, 32), (5, 5, 5)).save(root / "images" / "later-broken.png")
    record = _with_image("later", "images/later-broken.png")
    ds = SupervisedDataset([record], root, template, built.tokenizer, built.image_processor,
                           built.model.config.image_seq_len, 128, "square")
    (root / "images" / "later-broken.png").write_bytes(b"\x89PNG broken")
    outcome = TALLY.run("image files", lambda: ds[0], (DataError,), must_mention=("later-broken.png", "--resume"))
    assert outcome == "clean error", TALLY.failures[-1:]
