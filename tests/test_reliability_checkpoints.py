"""Checkpoints are atomic, a full disk is a clear error, and one run owns its directory.

The kill tests fork the training process at the moment it starts a save: the child runs the save with a
SIGKILL wired to one point (before/after each file, around the rename, while old checkpoints are rotated away),
the parent checks what is on disk, keeps a copy of it, and carries on as the uninterrupted reference run. Each
copy is then resumed and must end with the reference's weights.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from tinyllava.testing import tiny_run_spec
from tinyllava.testing.faults import KillPoint, killed_in_child
from tinyllava.testing.fuzz import report_dir

QUIET = Console(quiet=True)


def _spec(root: Path, name: str = "run"):
    from tinyllava.spec import load_spec

    raw = tiny_run_spec(root / "out", name=name, steps=2, save_steps=1, num_images=8)
    raw["stages"] = raw["stages"][1:]
    raw["stages"][0]["save_total_limit"] = 1  # rotation (deleting checkpoint-1) is a kill point too
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_spec(path), path


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def _check_trainer_checkpoint(folder: Path) -> None:
    """Everything --resume reads from a Trainer checkpoint is there and parses."""
    import torch
    from transformers.trainer_pt_utils import safe_globals

    assert _weights(folder)
    torch.load(folder / "optimizer.pt", weights_only=True)
    torch.load(folder / "scheduler.pt", weights_only=True)
    with safe_globals():  # numpy's RNG state: the Trainer allows these few numpy types, nothing else
        torch.load(folder / "rng_state.pth", weights_only=True)
    assert json.loads((folder / "trainer_state.json").read_text())["global_step"] == int(folder.name.split("-")[1])


def _trainer_points() -> list[KillPoint]:
    import transformers.trainer_utils as trainer_utils
    from transformers import Trainer, TrainerState

    from tinyllava.checkpoint import atomic
    from tinyllava.training.trainer import TinyLlavaTrainer

    def rotate_partly(output_dir: str, **kwargs) -> None:  # die after deleting one file of the old checkpoint
        old = Path(output_dir) / "checkpoint-1"
        next(p for p in old.iterdir() if p.is_file()).unlink()

    return [
        KillPoint("trainer: before the weights", TinyLlavaTrainer, "_save", "before"),
        KillPoint("trainer: after the weights", TinyLlavaTrainer, "_save"),
        KillPoint("trainer: after optimizer and scheduler", Trainer, "_save_optimizer_and_scheduler"),
        KillPoint("trainer: after the RNG state", Trainer, "_save_rng_state"),
        KillPoint("trainer: after trainer_state.json", TrainerState, "save_to_json"),
        KillPoint("trainer: before the rename", atomic, "commit_dir", "before"),
        KillPoint("trainer: after the rename", atomic, "commit_dir"),
        KillPoint("trainer: while deleting the old checkpoint", trainer_utils, "rotate_checkpoints", "during",
                  during=rotate_partly),
    ]


def _final_points(tokenizer, image_processor) -> list[KillPoint]:
    import safetensors.torch
    from transformers import PretrainedConfig

    from tinyllava.checkpoint import atomic, save

    return [
        KillPoint("final: after the weights", safetensors.torch, "save_file"),
        KillPoint("final: after config.json", PretrainedConfig, "save_pretrained"),
        KillPoint("final: after the tokenizer", type(tokenizer), "save_pretrained"),
        KillPoint("final: after the image processor", type(image_processor), "save_pretrained"),
        KillPoint("final: after the manifest", save, "write_manifest"),
        KillPoint("final: before the rename", atomic, "commit_dir", "before"),
        KillPoint("final: after the rename", atomic, "commit_dir"),
    ]


def test_sigkill_while_saving_keeps_the_last_checkpoint_and_resume_matches(tmp_path, monkeypatch):
    import tinyllava.checkpoint
    from tinyllava.checkpoint import atomic
    from tinyllava.checkpoint.load import load_checkpoint
    from tinyllava.training.runner import last_trainer_checkpoint, run_training

    spec, _ = _spec(tmp_path)
    out, run_dir = tmp_path / "out", spec.run_dir()
    ckpts, final = run_dir / "stage0-instruct" / "checkpoints", run_dir / "stage0-instruct" / "final"
    snapshots: list[tuple[str, Path]] = []
    tried: list[str] = []

    def snapshot(point: KillPoint) -> None:
        copy = tmp_path / "snap" / str(len(snapshots))
        shutil.copytree(out, copy, symlinks=True, ignore=shutil.ignore_patterns(".*.lock"))
        snapshots.append((point.name, copy))
        tried.append(point.name)

    save_trainer = atomic.save_trainer_checkpoint

    def trainer_save_with_kills(trainer, save, model, trial):
        if trainer.state.global_step == 2:  # checkpoint-1 is complete: kill the save of checkpoint-2
            for point in _trainer_points():
                assert killed_in_child(lambda: save_trainer(trainer, save, model, trial), [point]), point.name
                newest = last_trainer_checkpoint(ckpts)
                assert newest is not None and newest.name in ("checkpoint-1", "checkpoint-2"), point.name
                if "after the rename" not in point.name and "deleting" not in point.name:
                    assert newest.name == "checkpoint-1", point.name
                _check_trainer_checkpoint(newest)
                snapshot(point)
        return save_trainer(trainer, save, model, trial)

    save_final = tinyllava.checkpoint.save_checkpoint

    def final_save_with_kills(out_dir, model, tokenizer, image_processor, **kwargs):
        for point in _final_points(tokenizer, image_processor):
            assert killed_in_child(lambda: save_final(out_dir, model, tokenizer, image_processor, **kwargs),
                                   [point]), point.name
            if final.exists():  # only ever complete
                load_checkpoint(final)
            else:
                _check_trainer_checkpoint(last_trainer_checkpoint(ckpts))
            assert final.exists() == ("after the rename" in point.name), point.name
            snapshot(point)
            shutil.rmtree(final, ignore_errors=True)  # the parent goes on as if nothing happened
        return save_final(out_dir, model, tokenizer, image_processor, **kwargs)

    monkeypatch.setattr(atomic, "save_trainer_checkpoint", trainer_save_with_kills)
    monkeypatch.setattr(tinyllava.checkpoint, "save_checkpoint", final_save_with_kills)
    run_training(spec, console=QUIET)
    monkeypatch.undo()
    reference = _weights(final)
    assert len(tried) >= 10

    identical, resumed_states = 0, set()
    for name, copy in snapshots:
        state = _visible_state(copy / run_dir.name)
        if state in resumed_states:  # the same complete files as an earlier point: resuming would repeat it
            continue
        resumed_states.add(state)
        shutil.rmtree(out)
        shutil.copytree(copy, out, symlinks=True)
        assert not list(ckpts.glob("checkpoint-*.partial")), name
        run_training(spec, resume=True, console=QUIET)
        result = _weights(final)
        assert result.keys() == reference.keys(), name
        assert all(bool((result[k] == reference[k]).all()) for k in reference), name
        assert not list(run_dir.rglob(".*.partial")), f"{name}: a staging folder was left behind"
        identical += 1
    assert identical >= 3  # killed before checkpoint-2, after it, after the final checkpoint
    report = {"kill_points_tried": len(tried), "distinct_states_resumed": identical, "resumes_identical": identical,
              "points": tried}
    (report_dir() / "reliability-save-kills.json").write_text(json.dumps(report, indent=2))
    print(f"\nkill points tried while saving: {len(tried)} (each left the last checkpoint loadable); distinct states "
          f"on disk resumed: {identical}, all identical to the uninterrupted run")


def _visible_state(run_dir: Path) -> tuple[str, ...]:
    """The files --resume may read: everything but hidden staging folders and TensorBoard logs."""
    return tuple(sorted(
        str(p.relative_to(run_dir)) for p in run_dir.rglob("*")
        if p.is_file() and not any(part.startswith(".") or part == "runs" for part in p.relative_to(run_dir).parts)
    ))


def _disk_full_on(call: int, monkeypatch) -> None:
    import safetensors.torch

    original, calls = safetensors.torch.save_file, {"n": 0}

    def save_file(tensors, filename, *args, **kwargs):
        if Path(filename).name == "model.safetensors":  # checkpoints only, not the feature cache
            calls["n"] += 1
            if calls["n"] == call:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filename))
        return original(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)


def test_a_full_disk_stops_the_run_clearly_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tinyllava.training.runner import last_trainer_checkpoint, run_training
    from tinyllava_cli.app import app

    spec, path = _spec(tmp_path)
    stage = spec.run_dir() / "stage0-instruct"
    with monkeypatch.context() as patch:
        _disk_full_on(2, patch)  # the second save: Trainer checkpoint-2
        result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert "could not write the checkpoint" in message and "No space left on device" in message
    assert "checkpoint-1" in message and "--resume" in message and "Traceback" not in result.output
    assert last_trainer_checkpoint(stage / "checkpoints").name == "checkpoint-1"
    _check_trainer_checkpoint(stage / "checkpoints" / "checkpoint-1")
    assert not (stage / "checkpoints" / "checkpoint-2").exists()
    assert not list(stage.rglob(".*.partial"))

    with monkeypatch.context() as patch:  # resumed, it saves checkpoint-2, then the final write fails
        _disk_full_on(2, patch)
        from tinyllava.training.runner import RunError

        with pytest.raises(RunError, match=r"final: No space left on device.*still .*checkpoint-2"):
            run_training(spec, resume=True, console=QUIET)
    assert not (stage / "final").exists() and not list(stage.rglob(".*.partial"))
    run_training(spec, resume=True, console=QUIET)
    from tinyllava.checkpoint.load import load_checkpoint

    load_checkpoint(stage / "final")


def test_a_second_train_on_the_same_directory_is_refused(tmp_path):
    import signal

    from typer.testing import CliRunner

    from tinyllava.training import runner
    from tinyllava.training.run_lock import lock_path
    from tinyllava_cli.app import app

    spec, path = _spec(tmp_path)
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - a first `train` that holds the directory until it is killed
        try:
            import tinyllava.model.build

            def hold(*args, **kwargs):  # the run has started (spec.json written), now it builds the model
                os.write(ready_w, b"x")
                signal.pause()

            tinyllava.model.build.build_fresh = hold
            runner.run_training(spec, console=QUIET)
        finally:
            os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"x"
        for flags in ([], ["--resume"], ["--overwrite"]):
            second = CliRunner().invoke(app, ["train", str(path), *flags])
            assert second.exit_code == 2, second.output
            message = " ".join(second.stderr.split())
            assert f"is in use by another `tinyllava train` (pid {pid}" in message, message
            assert "Traceback" not in second.output
        assert (spec.run_dir() / "spec.json").is_file()  # the first run's files are untouched
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert json.loads(lock_path(spec.run_dir()).read_text())["pid"] == pid  # the dead run's lock is still there
    third = CliRunner().invoke(app, ["train", str(path), "--resume"])
    assert third.exit_code == 0, third.output
    assert f"taking over the lock of {spec.run_dir()} left by pid {pid}" in " ".join(third.stdout.split())
    assert not lock_path(spec.run_dir()).exists()  # released at the end


def test_a_full_disk_while_caching_only_skips_the_cache(tmp_path, monkeypatch):
    """The feature and token caches are optional: a failed write warns and training goes on."""
    import numpy as np
    import safetensors.torch
    import torch

    from tinyllava.data import token_cache
    from tinyllava.data.feature_cache import FeatureCache

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(safetensors.torch, "save_file", no_space)
    cache = FeatureCache(tmp_path / "features", "fp")
    cache.put("ab" * 32, torch.zeros(2, 3))
    assert cache.written == 0 and cache.get("ab" * 32) is None and not list(tmp_path.rglob("*.tmp"))
    monkeypatch.setattr(np, "save", no_space)
    data = token_cache.TokenizedData(*(np.zeros(1, dtype=np.int32) for _ in range(6)))
    token_cache.save(tmp_path / "tokens", "key", data)
    assert token_cache.load(tmp_path / "tokens", "key") is None and not list((tmp_path / "tokens").iterdir())
