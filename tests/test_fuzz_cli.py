"""Fuzzed specs, `--set` strings and command-line paths: a field-path error, a valid spec or a clean CLI error.

- Specs: hypothesis mutations of a valid run spec (values of any type at any path, deleted and unknown keys,
  wrong top levels) and of `--set` strings go through `resolve_spec`: a valid RunSpec or a SpecError naming the
  field path, nothing else.
- Every checkpoint-taking command (eval, chat, predict, export, merge, import, train's init_from) and `config
  validate` given a wrong path, a file, a non-checkpoint folder or a damaged checkpoint (truncated or garbage
  safetensors, missing parts, an edited manifest, a newer format version) exits non-zero with an `error:` line
  and no traceback. In-process through typer's CliRunner. `-s` prints the table (tinyllava.testing.fuzz).
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyllava.spec.errors import SpecError
from tinyllava.testing import tiny_run_spec
from tinyllava.testing.fuzz import FuzzTally

TALLY = FuzzTally("cli")
HYPOTHESIS = settings(max_examples=120, derandomize=True, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
BASE = tiny_run_spec(Path("/tmp/never-written"), steps=1)


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    TALLY.report()
    assert TALLY.total("traceback") == 0 and TALLY.total("silent drop") == 0, "\n".join(TALLY.failures)


def _paths(node, prefix=()):
    """Every path (tuple of keys/indices) in a nested dict/list."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


PATHS = [p for p in _paths(BASE) if p]
ANY_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**9), st.floats(allow_nan=True),
                      st.text(max_size=12), st.lists(st.integers(), max_size=3),
                      st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
                      st.sampled_from(["full", "lora", "frozen", "qlora", "zero3", "stop", "skip", "llama", "mlp",
                                       "-1", "1e-3", "", "pad"]))


def _parent(raw, path):
    node = raw
    for key in path[:-1]:
        node = node[key]
    return node


@st.composite
def mutated_spec(draw):
    raw = copy.deepcopy(BASE)
    touched: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(raw) if p]
        path = draw(st.sampled_from(paths))
        try:
            parent = _parent(raw, path)
        except (KeyError, IndexError, TypeError):
            continue
        kind = draw(st.sampled_from(["set", "set", "delete", "unknown-key"]))
        touched.append(str(path[0]))
        if kind == "set":
            parent[path[-1]] = draw(ANY_VALUE)
        elif kind == "delete" and isinstance(parent, dict):
            parent.pop(path[-1], None)
        elif kind == "unknown-key" and isinstance(parent, dict):
            key = draw(st.sampled_from(["lrr", "steps", "nme", "extra", "tune_mode"]))
            parent[key] = draw(ANY_VALUE)
            touched.append(key)
    return raw, touched


def _resolve(raw, overrides=()):
    from tinyllava.spec.runspec import resolve_spec

    return resolve_spec(raw, list(overrides), source="fuzz.yaml")


@given(case=mutated_spec())
@settings(HYPOTHESIS)
def test_fuzz_spec_mutations(case):
    raw, touched = case

    def check() -> None:
        try:
            _resolve(raw)
        except SpecError as exc:  # the error names a field path under one of the keys the mutation touched
            if not any(f"{key}" in str(exc) for key in touched):
                raise AssertionError(f"no field path under {touched} in {exc}") from None
            raise

    TALLY.run("spec mutations", check, (SpecError,), label=json.dumps(raw, default=str)[:300])


@given(top=st.one_of(st.none(), st.lists(st.integers(), max_size=2), st.text(max_size=10), st.integers()))
@settings(HYPOTHESIS, max_examples=10)
def test_fuzz_spec_top_level(top):
    TALLY.run("spec mutations", lambda: _resolve(top), (SpecError,), must_mention=("fuzz.yaml",), label=repr(top))


SET_PATHS = sorted({".".join(str(k) for k in p) for p in PATHS} | {"stages.9.lr", "stages.x.lr", "model..llm",
                                                                   "stages.0.tune.llm.mode", "name", ""})


@given(path=st.sampled_from(SET_PATHS), sep=st.sampled_from(["=", "==", ":", "= ", ""]),
       value=st.one_of(st.text(max_size=15), st.sampled_from(["1e-3", "[1, 2", "{a: 1}", "null", "true", "-1",
                                                              "lora", "{mode: partial, from_layer: x}", "[]"])))
@settings(HYPOTHESIS)
def test_fuzz_set_strings(path, sep, value):
    override = f"{path}{sep}{value}"
    TALLY.run("--set strings", lambda: _resolve(copy.deepcopy(BASE), [override]), (SpecError,), label=override)


@given(override=st.text(max_size=30))
@settings(HYPOTHESIS, max_examples=30)
def test_fuzz_set_garbage(override):
    TALLY.run("--set strings", lambda: _resolve(copy.deepcopy(BASE), [override]), (SpecError,), label=override)


# -- the CLI on wrong paths and damaged checkpoints -----------------------------------------------------------


class CliFailed(Exception):
    """A command that exited non-zero with an error line (the message is that line)."""


def _invoke(args: list[str], stdin: str | None = None) -> None:
    """Raise CliFailed for a clean failure; AssertionError (counted as a traceback) for anything else."""
    from typer.testing import CliRunner

    from tinyllava_cli.app import app

    result = CliRunner().invoke(app, [str(a) for a in args], input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{type(result.exception).__name__}: {result.exception}")
    if result.exit_code == 0:
        raise AssertionError(f"exit code 0 for {args}: {result.output[-300:]}")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    if not errors or "Traceback" in result.output:
        raise AssertionError(f"no error line (exit {result.exit_code}): {result.output[-300:]!r}")
    raise CliFailed(errors[0])


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    """Wrong paths and damaged checkpoints, each a folder or file name -> path."""
    from tinyllava.testing import save_and_reload_tiny

    root = tmp_path_factory.mktemp("targets")
    good = root / "good"
    save_and_reload_tiny(good)
    out: dict[str, Path] = {"nonexistent": root / "nope", "a file": root / "file.txt", "empty folder": root / "empty",
                            "not a checkpoint": root / "other"}
    (root / "file.txt").write_text("hello")
    (root / "empty").mkdir()
    (root / "other").mkdir()
    (root / "other" / "notes.md").write_text("x")

    def damaged(name: str, edit) -> None:
        folder = root / name.replace(" ", "-")
        shutil.copytree(good, folder)
        edit(folder)
        out[name] = folder

    def manifest(folder: Path, **changes) -> None:
        data = json.loads((folder / "tinyllava.json").read_text())
        for key, value in changes.items():
            if value is ...:
                data.pop(key)
            else:
                data[key] = value
        (folder / "tinyllava.json").write_text(json.dumps(data))

    weights = (good / "model.safetensors").read_bytes()
    damaged("manifest missing", lambda f: (f / "tinyllava.json").unlink())
    damaged("manifest not JSON", lambda f: (f / "tinyllava.json").write_text("{\"format_version\": 1,"))
    damaged("manifest a list", lambda f: (f / "tinyllava.json").write_text("[1, 2]"))
    damaged("manifest without components", lambda f: manifest(f, components=...))
    damaged("manifest with a bad component", lambda f: manifest(f, components={"llm": 3}))
    damaged("manifest weights a number", lambda f: manifest(f, weights=7))
    damaged("format version 99", lambda f: manifest(f, format_version=99))
    damaged("weights missing", lambda f: (f / "model.safetensors").unlink())
    damaged("weights truncated", lambda f: (f / "model.safetensors").write_bytes(weights[: len(weights) // 2]))
    damaged("weights garbage", lambda f: (f / "model.safetensors").write_bytes(b"\x00garbage" * 10))
    damaged("tokenizer missing", lambda f: shutil.rmtree(f / "tokenizer"))
    damaged("tokenizer corrupt", lambda f: (f / "tokenizer" / "tokenizer.json").write_text("{"))
    damaged("config.json missing", lambda f: (f / "config.json").unlink())
    damaged("image processor corrupt",
            lambda f: (f / "image_processor" / "preprocessor_config.json").write_text("nope"))
    return out


def _commands(path: Path, out: Path, questions: Path) -> dict[str, tuple[list, str | None]]:
    return {
        "eval": (["eval", "--model", path, "-b", "shapes", "--limit", "1", "--output", out / "ev"], None),
        "chat": (["chat", "--model", path], "\n"),
        "predict": (["predict", "--model", path, "--input", questions, "--output", out / "answers.jsonl"], None),
        "export": (["export", "--model", path, "--output", out / "exported"], None),
        "merge": (["merge", "--model", path, "--output", out / "merged"], None),
        "import": (["import", path, "--from", "hf-llava", "--output", out / "imported"], None),
        "config validate": (["config", "validate", path], None),
    }


def test_every_command_on_wrong_paths_and_damaged_checkpoints(targets, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"id": "1", "question": "What shape?"}) + "\n")
    for name, path in targets.items():
        for command, (args, stdin) in _commands(path, tmp_path / name.replace(" ", "-"), questions).items():
            outcome = TALLY.run(f"CLI: {command}", lambda a=args, s=stdin: _invoke(a, s), (CliFailed,),
                                label=f"{command} on {name}")
            assert outcome == "clean error", (command, name, TALLY.failures[-1:])


def test_train_with_a_damaged_init_from_is_a_clean_error(targets, tmp_path):
    raw = tiny_run_spec(tmp_path / "runs", steps=1)
    raw["stages"] = raw["stages"][1:]
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(raw))
    for i, name in enumerate(["not a checkpoint", "weights truncated", "format version 99", "manifest not JSON"]):
        args = ["train", spec, "--set", f"init_from={targets[name]}", "--set", f"name=r{i}"]
        outcome = TALLY.run("CLI: train init_from", lambda a=args: _invoke(a), (CliFailed,), label=name)
        assert outcome == "clean error", (name, TALLY.failures[-1:])


@pytest.mark.parametrize("content", [b"model: [unclosed", b"\xff\xfe bad bytes", b"", b"- a\n- b\n", b"\tname: x\n",
                                     b"name: x\nname: y\n"])
def test_config_validate_on_broken_yaml(tmp_path, content):
    path = tmp_path / "spec.yaml"
    path.write_bytes(content)
    outcome = TALLY.run("CLI: config validate (YAML)", lambda: _invoke(["config", "validate", path]), (CliFailed,),
                        label=repr(content))
    assert outcome == "clean error", TALLY.failures[-1:]
