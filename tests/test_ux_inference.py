"""eval/chat/predict as a user meets them: a wrong checkpoint path is answered at once (no torch import) with the
checkpoints found nearby; a corrupt image is a one-line error per input line, and good lines are always written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinyllava.testing.cli_probe import probe_cli
from tinyllava.testing.timeouts import SUBPROCESS_TIMEOUT_S

EXE = str(Path(sys.executable).parent / "tinyllava")
ENV = {**os.environ, "COLUMNS": "250", "OMP_NUM_THREADS": "1"}
HEAVY = ("torch", "transformers")
def cli(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, env=ENV,
                          input=input)


def probe(args: list[str], cwd: Path) -> tuple[int, str, list[str]]:
    proc, imported = probe_cli(args, HEAVY, env=ENV, cwd=cwd)
    return proc.returncode, proc.stderr, imported


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained tiny model saved as a run would save it: runs/r/stage0-s/final, runs/r/latest."""
    from tinyllava.testing import save_and_reload_tiny

    run = tmp_path_factory.mktemp("ux") / "runs" / "r"
    final = run / "stage0-s" / "final"
    save_and_reload_tiny(final)
    (run / "latest").symlink_to("stage0-s/final")
    return final


def test_wrong_checkpoint_path_answered_without_torch(checkpoint, tmp_path):
    root = checkpoint.parents[3]  # holds runs/
    for command in (["eval", "-b", "shapes"], ["chat"], ["predict", "--input", "q.jsonl", "--output", "a.jsonl"]):
        code, err, heavy = probe([command[0], "--model", "runs/r", *command[1:]], root)
        assert code == 2 and heavy == [], (command, err)
        assert "runs/r is not a tinyllava checkpoint" in err and "checkpoints found: runs/r/latest" in err, err
        assert "stage0-s/final" not in err  # latest and the final it points at are one checkpoint
    code, err, heavy = probe(["eval", "--model", "runs/r/lates", "-b", "shapes"], root)
    assert code == 2 and heavy == [] and "runs/r/lates does not exist; checkpoints found: runs/r/latest" in err
    code, err, _ = probe(["chat", "--model", "elsewhere"], root)
    assert "elsewhere does not exist; checkpoints found: runs/r/latest" in err
    code, err, _ = probe(["chat", "--model", "elsewhere"], root / "runs" / "r" / "stage0-s")
    assert "elsewhere does not exist; checkpoints found: final" in err
    code, err, _ = probe(["chat", "--model", "elsewhere"], tmp_path)
    assert "elsewhere does not exist; a training run's last checkpoint is runs/<name>/latest" in err


def test_predict_reports_bad_lines_and_writes_good_ones(checkpoint, tmp_path):
    from PIL import Image

    Image.new("RGB", (32, 32), (0, 0, 200)).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes((tmp_path / "good.png").read_bytes()[:60])  # truncated PNG
    (tmp_path / "text.png").write_text("not an image")
    lines = [
        {"id": "a", "question": "What colour?", "image": "good.png"},
        {"id": "b", "question": "What colour?", "image": "broken.png"},
        {"id": "c", "question": "Hello"},
        {"id": "d", "question": "What shape?", "image": "text.png"},
    ]
    questions = tmp_path / "q.jsonl"
    questions.write_text("\n".join(json.dumps(x) for x in lines) + "\n{oops\n")
    common = ["--model", str(checkpoint), "--input", str(questions), "--image-root", str(tmp_path),
              "--max-new-tokens", "3"]

    skip = cli("predict", *common, "--output", str(tmp_path / "skip.jsonl"), "--on-bad-line", "skip")
    assert skip.returncode == 0, skip.stderr
    assert "Traceback" not in skip.stderr
    assert f"{questions}:2 (id b): image {tmp_path / 'broken.png'} cannot be read" in skip.stderr
    assert f"{questions}:4 (id d): image" in skip.stderr and f"{questions}:5: not valid JSON" in skip.stderr
    rows = [json.loads(x) for x in (tmp_path / "skip.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "c", "d", None]
    assert [("answer" in r, "error" in r) for r in rows] == [(True, False), (False, True), (True, False),
                                                            (False, True), (False, True)]

    stop = cli("predict", *common, "--output", str(tmp_path / "stop.jsonl"))
    assert stop.returncode == 2 and "stopped at line 2" in stop.stderr and "Traceback" not in stop.stderr
    rows = [json.loads(x) for x in (tmp_path / "stop.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a"] and isinstance(rows[0]["answer"], str)


def test_chat_refuses_a_corrupt_image_cleanly(checkpoint, tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    proc = cli("chat", "--model", str(checkpoint), "--image", str(tmp_path / "bad.jpg"), input="hi\n\n")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"image {tmp_path / 'bad.jpg'} cannot be read" in proc.stderr


def test_eval_writes_a_score_chart_next_to_results(checkpoint, tmp_path):
    proc = cli("eval", "--model", str(checkpoint), "-b", "shapes", "-O", "shapes.per_category=1",
               "--batch-size", "8", "--output", str(tmp_path / "ev"))
    assert proc.returncode == 0, proc.stderr
    chart = tmp_path / "ev" / "shapes-scores.png"
    assert f"shapes chart: {chart}" in proc.stdout
    assert chart.read_bytes().startswith(b"\x89PNG")
    report = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert report["benchmarks"]["shapes"]["chart"] == str(chart)
