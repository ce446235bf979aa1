"""Pictures and listings a person looks at: loss plot, score charts, `tinyllava runs`, `tinyllava eval compare`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from tinyllava.reporting.history import HISTORY_NAME, final_loss, wall_seconds
from tinyllava.reporting.plots import loss_plot
from tinyllava.reporting.runs import list_runs, loss_plot_for_run
from tinyllava.reporting.scores import category_scores, chance_levels, headline
from tinyllava.testing.timeouts import SUBPROCESS_TIMEOUT_S

PNG = b"\x89PNG\r\n\x1a\n"


def history(steps: int, loss0: float = 3.0, runtime: float | None = 12.5) -> dict:
    log = [{"step": s, "loss": loss0 / s, "learning_rate": 1e-3 * s / steps} for s in range(1, steps + 1)]
    if runtime is not None:
        log.append({"step": steps, "train_loss": 1.25, "train_runtime": runtime})
    return {"stage": "x", "global_step": steps, "max_steps": steps, "started": 0.0, "updated": 20.0,
            "log_history": log}


def fake_run(root: Path, name: str, stages: dict[str, dict | None], results: dict | None = None) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "spec.json").write_text(json.dumps({"name": name, "stages": [{"name": s} for s in stages]}))
    for i, (stage, hist) in enumerate(stages.items()):
        folder = run / f"stage{i}-{stage}"
        folder.mkdir()
        if hist is not None:
            (folder / HISTORY_NAME).write_text(json.dumps(hist))
            (folder / "final").mkdir()
    if results is not None:
        (run / f"stage{len(stages) - 1}-{list(stages)[-1]}" / "final" / "eval").mkdir(parents=True)
        (run / f"stage{len(stages) - 1}-{list(stages)[-1]}" / "final" / "eval" / "results.json").write_text(
            json.dumps(results))
    return run


def shapes_results(overall: float) -> dict:
    return {"model": "m", "failed": {}, "benchmarks": {"shapes": {"metrics": {
        "colour/accuracy": overall, "colour/chance": 0.2, "count/accuracy": overall / 2, "count/chance": 0.33,
        "overall/accuracy": overall, "questions": 40, "scenes/checked": 8}}}}


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "tinyllava_cli.app", *args], capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT_S, env=env, cwd=cwd)


def test_history_summaries():
    h = history(4)
    assert final_loss(h) == 1.25 and wall_seconds(h) == 12.5
    h = history(4, runtime=None)
    assert final_loss(h) == 0.75 and wall_seconds(h) == 20.0  # last logged loss; updated - started


def test_loss_plot_one_panel_per_logged_stage(tmp_path):
    assert loss_plot([("a", {"log_history": []})], tmp_path / "none.png") is None
    run = fake_run(tmp_path, "r", {"align": history(5), "instruct": history(3), "late": None})
    path = loss_plot_for_run(run)
    assert path == run / "loss.png" and path.read_bytes().startswith(PNG)


def test_scores_skip_counts_and_chance():
    metrics = shapes_results(0.9)["benchmarks"]["shapes"]["metrics"]
    assert category_scores(metrics) == {"colour": 0.9, "count": 0.45, "overall": 0.9}
    assert chance_levels(metrics) == {"colour": 0.2, "count": 0.33}
    assert headline(metrics) == ("overall/accuracy", 0.9)
    assert headline({"accuracy": 71.5, "questions": 3}) == ("accuracy", 71.5)


def test_score_chart_written_next_to_results(tmp_path):
    from rich.console import Console

    from tinyllava.eval.runner import score_chart

    metrics = shapes_results(0.7)["benchmarks"]["shapes"]["metrics"]
    path = score_chart("shapes", metrics, tmp_path / "shapes-scores.png", Console(file=io.StringIO()))
    assert path is not None and path.read_bytes().startswith(PNG)
    assert score_chart("x", {"questions": 3}, tmp_path / "x.png", Console(file=io.StringIO())) is None


def test_runs_lists_stages_steps_loss_time_and_eval(tmp_path):
    fake_run(tmp_path / "runs", "first", {"align": history(5), "instruct": history(3)}, shapes_results(0.875))
    fake_run(tmp_path / "runs", "second", {"align": history(2, runtime=None), "instruct": None})
    (tmp_path / "runs" / ".cache").mkdir()
    runs = {r.name: r for r in list_runs(tmp_path / "runs")}
    assert set(runs) == {"first", "second"}
    assert runs["first"].seconds == 25.0 and runs["first"].final_loss == 1.25
    assert runs["first"].eval_score == "shapes overall/accuracy 0.875"
    assert [s.finished for s in runs["second"].stages] == [True, False]
    proc = cli("runs", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    first = next(line for line in proc.stdout.splitlines() if "first" in line)
    for text in ("align, instruct", "5 + 3", "1.2500", "25s", "0.875"):
        assert text in first, (text, first)
    assert "instruct (unfinished)" in proc.stdout
    data = json.loads(cli("runs", "--json", "--dir", str(tmp_path / "runs")).stdout)
    assert [r["name"] for r in data] == ["first", "second"]
    missing = cli("runs", "--dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_eval_compare_table_json_and_chart(tmp_path):
    run = fake_run(tmp_path / "runs", "a", {"align": history(2)}, shapes_results(0.5))
    other = tmp_path / "b" / "results.json"
    other.parent.mkdir()
    other.write_text(json.dumps(shapes_results(1.0)))
    out = tmp_path / "cmp" / "chart.png"
    proc = cli("eval", "compare", str(run), str(other), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    colour = next(line for line in proc.stdout.splitlines() if "colour" in line)
    assert "0.5" in colour and "1" in colour.split("colour")[1]
    assert out.read_bytes().startswith(PNG)
    table = json.loads(out.with_suffix(".json").read_text())
    assert [r["category"] for r in table["rows"]] == ["colour", "count", "overall"]
    assert [r["scores"] for r in table["results"]] == [[0.5, 0.25, 0.5], [1.0, 0.5, 1.0]]
    bad = cli("eval", "compare", str(tmp_path / "nowhere"))
    assert bad.returncode == 2 and "does not exist" in bad.stderr


def test_plain_progress_lines():
    from tinyllava.training.progress import PlainProgressCallback, format_duration, progress_line

    assert format_duration(3725) == "1h02m" and format_duration(75) == "1m15s" and format_duration(4.2) == "4s"
    line = progress_line("stage 1/2 align", 20, 100, {"loss": 1.23456, "learning_rate": 1e-3}, 10.0, 20, 8)
    assert line == "stage 1/2 align: step 20/100 (20%) loss 1.2346 lr 1.00e-03 16.0 samples/s ETA 40s"
    out = io.StringIO()
    callback = PlainProgressCallback("stage 1/1 s", stream=out)
    args = SimpleNamespace(per_device_train_batch_size=4, gradient_accumulation_steps=2, world_size=1)
    state = SimpleNamespace(global_step=0, max_steps=10, is_world_process_zero=True)
    callback.on_train_begin(args, state, None)
    state.global_step = 5
    callback.on_log(args, state, None, logs={"loss": 0.5, "learning_rate": 2e-4})
    callback.on_log(args, state, None, logs={"train_runtime": 1.0})  # the end-of-training summary: no line
    callback.on_train_end(args, state, None)
    lines = out.getvalue().splitlines()
    assert lines[0] == "stage 1/1 s: 10 steps"
    assert lines[1].startswith("stage 1/1 s: step 5/10 (50%) loss 0.5000 lr 2.00e-04 ") and "ETA" in lines[1]
    assert lines[2].startswith("stage 1/1 s: finished at step 5") and len(lines) == 3


def test_interrupt_closes_the_live_bar(monkeypatch):
    from tinyllava.training import progress

    monkeypatch.setattr(progress, "is_terminal", lambda stream=None: True)
    callback = progress.progress_callback("stage 1/1 s")
    assert type(callback).__name__ == "RichProgressCallback"
    state = SimpleNamespace(global_step=0, max_steps=10, is_world_process_zero=True)
    callback.on_train_begin(None, state, None)
    live = callback.progress
    assert live is not None and live.live.is_started
    progress.close_progress()  # what Ctrl-C does: on_train_end never runs
    assert callback.progress is None and not live.live.is_started
    monkeypatch.setattr(progress, "is_terminal", lambda stream=None: False)
    assert type(progress.progress_callback("x")).__name__ == "PlainProgressCallback"
    progress.close_progress()
