"""Write a directory so that readers only ever see the previous one or the complete new one.

Everything is written into a hidden sibling (`.<name>.partial`), flushed to disk, then renamed into
place: a process killed at any point (SIGKILL, power loss after the flush) leaves either no `<name>`
or a complete one, never a half-written directory that looks loadable. Replacing an existing
directory moves it aside to `.<name>.replaced` first; if the process dies between the two renames,
the next write (or `recover`) puts it back.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (disk full, permissions...); the previous one is untouched."""


def partial_path(final: Path) -> Path:
    """The hidden sibling a directory is written into before it is renamed into place."""
    final = Path(final)
    return final.with_name(f".{final.name}.partial")


def _replaced_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.replaced")


def recover(final: Path) -> None:
    """Put back a directory that was moved aside by a replace the process did not finish."""
    final = Path(final)
    old = _replaced_path(final)
    if old.is_dir() and not final.exists():
        os.replace(old, final)


def _fsync(path: Path, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return  # e.g. directories cannot be opened on some platforms: nothing to flush
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF):  # file systems without fsync on directories
            raise
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file and directory under `root`, so the rename never publishes data still in the cache."""
    for folder, _, files in os.walk(root):
        for name in files:
            _fsync(Path(folder) / name)
        _fsync(Path(folder), directory=True)


def commit_dir(staging: Path, final: Path) -> None:
    """Flush `staging` and rename it to `final` (an existing `final` is replaced as a whole)."""
    staging, final = Path(staging), Path(final)
    fsync_tree(staging)
    recover(final)
    if final.exists() or final.is_symlink():
        old = _replaced_path(final)
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, final)
    _fsync(final.parent, directory=True)


def write_failed(final: Path, exc: OSError, previous: str = "") -> CheckpointWriteError:
    """The one-line error for a checkpoint that could not be written."""
    reason = exc.strerror or str(exc)
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    kept = f"; the last complete checkpoint is still {previous}" if previous else "; nothing was replaced"
    return CheckpointWriteError(f"could not write the checkpoint {final}: {reason}{where}{kept}. Free disk space "
                                f"(or fix the permissions) and run again with --resume")


@contextmanager
def atomic_dir(final: Path, previous: str = "") -> Iterator[Path]:
    """Yield a fresh staging directory; on success it becomes `final`, on failure it is removed.

    An OSError (disk full, permissions) becomes a CheckpointWriteError that says what was kept.
    """
    final = Path(final)
    staging = partial_path(final)
    try:
        recover(final)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        yield staging
        commit_dir(staging, final)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise write_failed(final, exc, previous) from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write a small file through a temporary sibling and a rename (readers never see half of it)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_trainer_checkpoint(trainer: Any, save: Callable[[Any, Any], None], model: Any, trial: Any) -> None:
    """Run the Trainer's own `_save_checkpoint` (`save`) into `.checkpoint-N.partial/`, then rename.

    Every rank writes its files (RNG states, DeepSpeed shards) into the same staging folder; once all have,
    the main process renames it to `checkpoint-N` and only then rotates old checkpoints away, so the newest
    complete checkpoint always exists on disk.
    """
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

    run_dir = Path(trainer._get_output_dir(trial=trial))
    final = run_dir / f"{PREFIX_CHECKPOINT_DIR}-{trainer.state.global_step}"
    staging_root = partial_path(final)
    main = trainer.args.should_save
    previous = _newest_checkpoint(run_dir)
    try:
        if main:
            recover(final)
            shutil.rmtree(staging_root, ignore_errors=True)
            staging_root.mkdir(parents=True)
        trainer.accelerator.wait_for_everyone()
        trainer._get_output_dir = lambda trial=None: str(staging_root)  # the Trainer writes into the staging root
        try:
            save(model, trial)
        finally:
            del trainer._get_output_dir
        trainer.accelerator.wait_for_everyone()
        if main:
            commit_dir(staging_root / final.name, final)
            shutil.rmtree(staging_root, ignore_errors=True)
            rotate_checkpoints(output_dir=str(run_dir), save_total_limit=trainer.args.save_total_limit,
                               best_model_checkpoint=trainer.state.best_model_checkpoint, use_mtime=False)
    except OSError as exc:
        if main:
            shutil.rmtree(staging_root, ignore_errors=True)
        raise write_failed(final, exc, str(previous) if previous else "") from exc


def _newest_checkpoint(run_dir: Path) -> Path | None:
    steps = [p for p in run_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(steps, key=lambda p: int(p.name.split("-")[-1]), default=None)


def replace_symlink(link: Path, target: str) -> None:
    """Point `link` at `target` in one rename: the link always exists, to the old or the new target."""
    link = Path(link)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)


def discard_partials(folder: Path) -> None:
    """Remove staging folders a killed save left under `folder` (they never hold anything to resume from)."""
    for staging in sorted(Path(folder).rglob(".*.partial"), reverse=True):
        shutil.rmtree(staging, ignore_errors=True)
