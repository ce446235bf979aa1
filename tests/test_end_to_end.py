"""Train, save, reload, evaluate, predict, chat and resume, through the CLI as a user would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tinyllava.testing import tiny_run_spec
from tinyllava.testing.runs import saved_step
from tinyllava.testing.timeouts import SUBPROCESS_TIMEOUT_S

EXE = str(Path(sys.executable).parent / "tinyllava")
ENV = {**os.environ, "COLUMNS": "250", "OMP_NUM_THREADS": "1"}


def cli(*args: str, input: str | None = None, timeout: int = SUBPROCESS_TIMEOUT_S) -> subprocess.CompletedProcess:
    proc = subprocess.run([EXE, *args], capture_output=True, text=True, timeout=timeout, env=ENV, input=input)
    return proc


def write_spec(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    spec = write_spec(root / "spec.yaml", tiny_run_spec(root / "runs", steps=3))
    proc = cli("train", str(spec))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("checkpoint: "))
    return Path(line.removeprefix("checkpoint: ").strip()), proc.stdout


def test_train_writes_self_contained_checkpoint(trained):
    ckpt, out = trained
    assert ckpt.name == "final" and ckpt.parent.name == "stage1-instruct"
    manifest = json.loads((ckpt / "tinyllava.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["components"]["chat_template"]["name"] == "llama"
    assert manifest["plugins"]["llm/llama"]["distribution"] == "tinyllava-plugin-llama"
    assert manifest["spec"]["stages"][1]["name"] == "instruct"
    for name in ("model.safetensors", "config.json", "tokenizer/tokenizer.json",
                 "image_processor/preprocessor_config.json"):
        assert (ckpt / name).is_file(), name
    assert "stage align: parameters" in out and "trainable" in out
    stage0 = ckpt.parent.parent / "stage0-align" / "final"
    assert json.loads((stage0 / "tinyllava.json").read_text())["components"]["chat_template"]["name"] == "pretrain"
    assert list((ckpt.parent / "checkpoints").glob("runs/*/events.out.tfevents.*"))  # TensorBoard logs


def test_second_stage_starts_from_the_first(trained):
    from safetensors.torch import load_file

    ckpt, _ = trained
    first = load_file(ckpt.parent.parent / "stage0-align" / "final" / "model.safetensors")
    second = load_file(ckpt / "model.safetensors")
    frozen = [k for k in first if k.startswith("vision_tower.")]
    assert frozen and all((first[k] == second[k]).all() for k in frozen)  # frozen tower carried over
    moved = [k for k in first if k.startswith("connector.")]
    assert any(not (first[k] == second[k]).all() for k in moved)


def test_checkpoint_reloads_offline_and_generates(trained):
    from tinyllava.checkpoint import load_checkpoint
    from tinyllava.inference import Pipeline
    from tinyllava.inference.pipeline import GenerationSettings

    ckpt, _ = trained
    loaded = load_checkpoint(ckpt)
    assert loaded.template.name == "llama"
    pipe = Pipeline(loaded)
    from PIL import Image

    img = Image.new("RGB", (32, 32), (200, 0, 0))
    convs = [[{"from": "human", "value": "<image>\nWhat colour?"}], [{"from": "human", "value": "Hi"}],
             [{"from": "human", "value": "<image>\nWhere is the red circle at the moment?"}]]
    images = [img, None, img]
    settings = GenerationSettings(max_new_tokens=6)
    batched = pipe.answer(convs, images, settings)
    single = [pipe.answer([c], [i], settings)[0] for c, i in zip(convs, images, strict=True)]
    assert batched == single  # left padding does not change greedy answers
    sampled = pipe.answer(convs[:1], images[:1], GenerationSettings(max_new_tokens=6, temperature=1.0, seed=3))
    again = pipe.answer(convs[:1], images[:1], GenerationSettings(max_new_tokens=6, temperature=1.0, seed=3))
    assert sampled == again


def test_eval_prints_table_and_writes_json(trained, tmp_path):
    ckpt, _ = trained
    proc = cli("eval", "--model", str(ckpt), "--benchmark", "shapes", "--limit", "10", "--batch-size", "4",
               "--output", str(tmp_path / "ev"))
    assert proc.returncode == 0, proc.stderr
    assert "colour" in proc.stdout and "chance" in proc.stdout
    report = json.loads((tmp_path / "ev" / "results.json").read_text())
    metrics = report["benchmarks"]["shapes"]["metrics"]
    assert set(metrics) >= {"overall/accuracy", "colour/accuracy", "yes/no/chance"}
    assert report["benchmarks"]["shapes"]["questions"] == 10
    answers = (tmp_path / "ev" / "shapes" / "shapes_answers.jsonl").read_text().splitlines()
    assert len(answers) == 10
    again = cli("eval", "--model", str(ckpt), "--benchmark", "shapes", "--limit", "10", "--batch-size", "1",
                "--output", str(tmp_path / "ev2"))
    assert again.returncode == 0
    assert (tmp_path / "ev2" / "shapes" / "shapes_answers.jsonl").read_text().splitlines() == answers


def test_predict_and_chat(trained, tmp_path):
    from PIL import Image

    ckpt, _ = trained
    Image.new("RGB", (32, 32), (0, 0, 200)).save(tmp_path / "blue.png")
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"id": "a", "question": "What colour?", "image": "blue.png"}) + "\n"
                         + json.dumps({"id": "b", "question": "Hello"}) + "\n")
    proc = cli("predict", "--model", str(ckpt), "--input", str(questions), "--output", str(tmp_path / "a.jsonl"),
               "--image-root", str(tmp_path), "--max-new-tokens", "5")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b"] and all(isinstance(r["answer"], str) for r in rows)
    chat = cli("chat", "--model", str(ckpt), "--image", str(tmp_path / "blue.png"), "--max-new-tokens", "5",
               input="What colour?\nAnd the shape?\n\n")
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.count("assistant>") == 2


def test_chat_history_keeps_full_answers(trained, monkeypatch):
    """The second turn's prompt contains the first answer in full (the original truncated it)."""
    from tinyllava.checkpoint import load_checkpoint
    from tinyllava.inference import Pipeline
    from tinyllava.inference.pipeline import GenerationSettings

    ckpt, _ = trained
    pipe = Pipeline(load_checkpoint(ckpt))
    seen: list[list[dict]] = []
    original = pipe.answer

    def spy(convs, images, settings=None):
        seen.append([dict(t) for t in convs[0]])
        return original(convs, images, settings)

    first = spy([[{"from": "human", "value": "Hi"}]], [None], GenerationSettings(max_new_tokens=5))[0]
    history = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": first}, {"from": "human", "value": "More"}]
    spy([history], [None], GenerationSettings(max_new_tokens=5))
    assert seen[1][1]["value"] == first
    text = pipe.template.render(history, add_generation_prompt=True)
    assert f"ASSISTANT: {first}</s>USER: More ASSISTANT:" in text


def test_bad_data_is_reported_with_record_ids(tmp_path):
    (tmp_path / "img").mkdir()
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "img" / "ok.png")
    (tmp_path / "img" / "broken.png").write_bytes(b"not a png")
    records = [
        {"id": "good", "image": "ok.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "black"}]},
        {"id": "missing", "image": "nope.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "x"}]},
        {"id": "unreadable", "image": "broken.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "x"}]},
        {"id": "twotags", "image": "ok.png", "conversations": [
            {"from": "human", "value": "<image> <image>\nWhat?"}, {"from": "gpt", "value": "x"}]},
    ]
    (tmp_path / "data.json").write_text(json.dumps(records))
    raw = tiny_run_spec(tmp_path / "runs", steps=1)
    raw["stages"] = raw["stages"][1:]
    raw["stages"][0]["data"] = {"json_path": str(tmp_path / "data.json"), "image_root": str(tmp_path / "img")}
    proc = cli("train", str(write_spec(tmp_path / "s.yaml", raw)))
    assert proc.returncode == 2
    for rid in ("missing", "unreadable", "twotags"):
        assert f"record {rid}" in proc.stderr
    assert "on_bad_record: skip" in proc.stderr
    raw["stages"][0]["data"]["on_bad_record"] = "skip"
    proc = cli("train", str(write_spec(tmp_path / "s.yaml", raw)), "--set", "name=skip")
    assert proc.returncode == 0, proc.stderr
    assert "skipped 3 bad record(s)" in proc.stdout


def _weights(ckpt: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(ckpt / "model.safetensors")


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    raw = tiny_run_spec(tmp_path / "runs", steps=12, save_steps=3, num_images=24)
    raw["stages"] = raw["stages"][1:]
    spec = write_spec(tmp_path / "s.yaml", raw)
    straight = cli("train", str(spec), "--set", "name=straight")
    assert straight.returncode == 0, straight.stderr
    reference = _weights(tmp_path / "runs" / "straight" / "stage0-instruct" / "final")

    ckpts = tmp_path / "runs" / "killed" / "stage0-instruct" / "checkpoints"
    proc = subprocess.Popen([EXE, "train", str(spec), "--set", "name=killed"], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + SUBPROCESS_TIMEOUT_S
    # checkpoint-6 or a later one; a run that ends first fails below instead of leaving this loop waiting
    while time.time() < deadline and proc.poll() is None and saved_step(ckpts) < 6:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert saved_step(ckpts) >= 6, "the run never reached step 6"
    assert not (ckpts.parent / "final").exists(), "the run finished before it could be killed"
    refused = cli("train", str(spec), "--set", "name=killed")
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = cli("train", str(spec), "--set", "name=killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout
    result = _weights(ckpts.parent / "final")
    assert result.keys() == reference.keys()
    for key in reference:
        assert (result[key] - reference[key]).abs().max() <= 1e-6, key


def test_eval_options_and_isolation(trained, tmp_path):
    ckpt, _ = trained
    proc = cli("eval", "--model", str(ckpt), "-b", "pope", "-b", "shapes", "-O", "shapes.per_category=2",
               "--data", str(tmp_path / "nowhere"), "--output", str(tmp_path / "ev"))
    assert proc.returncode == 1, proc.stdout + proc.stderr  # pope has no data: it fails, shapes still runs
    report = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert "pope" in report["failed"] and "DataLayoutError" in report["failed"]["pope"]
    assert report["benchmarks"]["shapes"]["questions"] == 10 + 8  # 2 a category; compositional: 4 categories
    bad = cli("eval", "--model", str(ckpt), "-b", "shapes", "-O", "shapes.per_categroy=2")
    assert bad.returncode == 2 and "per_categroy" in bad.stderr
    wrong = cli("eval", "--model", str(ckpt), "-b", "shapes", "-O", "pope.split=x")
    assert wrong.returncode == 2 and "not among --benchmark" in wrong.stderr


def test_eval_option_changes_the_benchmark(trained, tmp_path):
    ckpt, _ = trained
    proc = cli("eval", "--model", str(ckpt), "-b", "shapes", "-O", "shapes.per_category=2",
               "--output", str(tmp_path / "ev"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert report["benchmarks"]["shapes"]["questions"] == 10 + 8 and report["failed"] == {}


def test_train_without_a_spec_runs_the_quickstart(tmp_path):
    """`tinyllava train` with no spec trains the built-in quickstart (shrunk here to two steps a stage)."""
    shrink = []
    for i in (0, 1):
        shrink += ["--set", f"stages.{i}.max_steps=2", "--set", f"stages.{i}.data.dataset.num_images=8",
                   "--set", f"stages.{i}.batch_size=4"]
    proc = cli("train", "--set", f"output_dir={tmp_path}", "--set", "num_threads=1", *shrink)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no spec given: training the quickstart model" in proc.stdout
    ckpt = tmp_path / "quickstart" / "stage1-instruct" / "final"
    assert f"checkpoint: {ckpt}" in proc.stdout
    assert (tmp_path / "quickstart" / "latest").resolve() == ckpt.resolve()
    manifest = json.loads((ckpt / "tinyllava.json").read_text())
    assert manifest["spec"]["name"] == "quickstart" and manifest["image_seq_len"] == 4  # 64 px, 32 px patches


def test_too_short_max_length_is_a_clear_error(tmp_path):
    raw = tiny_run_spec(tmp_path / "runs", steps=1)
    raw["stages"] = raw["stages"][1:]
    raw["model"]["max_length"] = 20  # shorter than the image and the system prompt
    proc = cli("train", str(write_spec(tmp_path / "s.yaml", raw)))
    assert proc.returncode == 2
    assert "raise model.max_length" in proc.stderr
