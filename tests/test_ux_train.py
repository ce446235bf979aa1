"""`tinyllava train` as a user sees it in a log file: progress lines, the loss plot, the next commands, a clean
refusal that leaves nothing behind, --overwrite, --resume with nothing to resume, and Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tinyllava.testing import tiny_run_spec
from tinyllava.testing.runs import saved_step
from tinyllava.testing.timeouts import SUBPROCESS_TIMEOUT_S

EXE = str(Path(sys.executable).parent / "tinyllava")
ENV = {**os.environ, "COLUMNS": "250", "OMP_NUM_THREADS": "1"}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, env=ENV)


def write_spec(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


def test_train_in_a_log_file_prints_progress_plot_and_next_steps(tmp_path):
    spec = write_spec(tmp_path / "s.yaml", tiny_run_spec(tmp_path / "runs", steps=3))
    proc = cli("train", str(spec))  # stdout is a pipe, as in a log file
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "torch threads: 1 (num_threads in the spec; change with --set num_threads=N)" in out
    lines = [line for line in out.splitlines() if line.startswith("stage 1/2 align: step ")]
    assert [line.split()[4] for line in lines] == ["1/3", "2/3", "3/3"], out
    assert all(" loss " in line and " lr " in line and "samples/s" in line and "ETA" in line for line in lines)
    run = tmp_path / "runs" / "tiny"
    assert f"loss plot: {run / 'loss.png'}" in out
    assert (run / "loss.png").read_bytes().startswith(b"\x89PNG")
    assert f"tinyllava eval --model {run / 'latest'} --benchmark shapes" in out
    assert f"tinyllava chat --model {run / 'latest'} --image" in out
    assert (run / "latest" / "manifest.json").is_file() or (run / "latest").resolve().is_dir()
    assert (run / "stage0-align" / "history.json").is_file()
    assert "Setting accelerator to CPU" not in out and "requires torchvision" not in proc.stderr  # no --verbose

    again = cli("train", str(spec))
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_refused_run_leaves_nothing_and_resume_says_there_is_no_run(tmp_path):
    raw = tiny_run_spec(tmp_path / "runs", steps=1)
    raw["stages"] = raw["stages"][:1]
    raw["stages"][0]["data"] = {"json_path": str(tmp_path / "missing.json")}
    spec = write_spec(tmp_path / "s.yaml", raw)
    refused = cli("train", str(spec))
    assert refused.returncode == 2 and "missing.json" in refused.stderr, refused.stderr
    assert not (tmp_path / "runs" / "tiny").exists()  # the corrected rerun is not refused
    resumed = cli("train", str(spec), "--resume")
    assert resumed.returncode == 2 and "no run in" in resumed.stderr and "drop --resume" in resumed.stderr
    both = cli("train", str(spec), "--resume", "--overwrite")
    assert both.returncode == 2 and "give one of them" in both.stderr


def test_ctrl_c_says_where_the_checkpoint_is_and_overwrite_replaces_the_run(tmp_path):
    raw = tiny_run_spec(tmp_path / "runs", steps=400, save_steps=1)
    raw["stages"] = raw["stages"][1:]
    raw["stages"][0]["logging_steps"] = 100
    spec = write_spec(tmp_path / "s.yaml", raw)
    ckpts = tmp_path / "runs" / "tiny" / "stage0-instruct" / "checkpoints"
    # a suite started in the background (`cmd &`) inherits SIGINT ignored: give the child the default back
    proc = subprocess.Popen([EXE, "train", str(spec), "--set", "seed=3"], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + SUBPROCESS_TIMEOUT_S  # any checkpoint from the second on
    while time.time() < deadline and proc.poll() is None and saved_step(ckpts) < 2:
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be interrupted:\n{proc.communicate()[1][-2000:]}"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    assert proc.returncode == 130, err
    assert "interrupted. last checkpoint: " + str(ckpts / "checkpoint-") in out, out
    assert f"resume with: tinyllava train {spec} --set seed=3 --resume" in out

    replaced = cli("train", str(spec), "--overwrite", "--set", "stages.0.max_steps=1")
    assert replaced.returncode == 0, replaced.stderr
    assert "deleting the previous run" in replaced.stdout
    assert sorted(p.name for p in ckpts.glob("checkpoint-*")) == ["checkpoint-1"]
    mask = os.umask(0)
    os.umask(mask)
    weights = [ckpts / "checkpoint-1" / "model.safetensors", ckpts.parent / "final" / "model.safetensors"]
    assert [w.stat().st_mode & 0o777 for w in weights] == [0o666 & ~mask] * 2  # not safetensors' 0600
