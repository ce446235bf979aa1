"""One `tinyllava train` per run directory: a lock file next to it, held for the whole run.

The lock is an OS file lock (`flock`) on `<output_dir>/.<name>.lock`: the kernel releases it when the holder
exits in any way, SIGKILL included, so a lock left by a dead run is never mistaken for a live one. The file
records the holder's pid, host and start time for the message a second run gets. It lives beside the run
directory rather than in it, so deleting or checking the run directory never touches it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from tinyllava.training.runner import RunError


class RunLockedError(RunError):
    """Another live process holds the run directory."""


def lock_path(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.with_name(f".{run_dir.name}.lock")


def _holder(text: str) -> dict[str, Any]:
    try:
        info = json.loads(text)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _describe(info: dict[str, Any]) -> str:
    parts = [f"pid {info.get('pid', '?')}"]
    if info.get("host"):
        parts.append(f"on {info['host']}")
    if info.get("started"):
        parts.append(f"started {info['started']}")
    return " ".join(parts)


def _try_lock(path: Path) -> tuple[int | None, str]:
    """(fd holding the lock, previous content) or (None, the holder's content)."""
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            content = os.read(fd, 4096).decode("utf-8", "replace")
            os.close(fd)
            return None, content
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file the previous holder unlinked while we were opening it
            return fd, os.read(fd, 4096).decode("utf-8", "replace")
        os.close(fd)


_HELD: set[Path] = set()  # lock files this process holds


def refuse_if_locked(run_dir: Path) -> None:
    """Raise RunLockedError when another live process holds the run directory's lock (takes nothing)."""
    import fcntl

    path = lock_path(run_dir)
    if path in _HELD or not path.is_file():
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RunLockedError(_in_use(run_dir, os.read(fd, 4096).decode("utf-8", "replace"))) from None
    finally:
        os.close(fd)


def _in_use(run_dir: Path, holder: str) -> str:
    return (f"{run_dir} is in use by another `tinyllava train` ({_describe(_holder(holder))}); wait for it to "
            f"finish or stop it, or train into another directory (--set name=... or output_dir=...)")


class RunLock:
    """A held lock; `release` gives it up (and is safe to call twice)."""

    def __init__(self, path: Path | None, fd: int | None) -> None:
        self.path, self.fd = path, fd

    def release(self) -> None:
        if self.fd is None or self.path is None:
            return
        try:
            self.path.unlink()  # still holding the lock: nobody can have taken it in between
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None
        _HELD.discard(self.path)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire_run_lock(run_dir: Path, console: Any = None, enabled: bool = True) -> RunLock:
    """Take the run directory's lock (a no-op lock when not `enabled`, e.g. on ranks other than 0).

    Raises RunLockedError, naming the holder, when another live run holds it; takes over (and says so) a lock
    whose holder died.
    """
    if not enabled:
        return RunLock(None, None)
    path = lock_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, previous = _try_lock(path)
    if fd is None:
        raise RunLockedError(_in_use(run_dir, previous))
    stale = _holder(previous)
    if stale and console is not None:
        console.print(f"taking over the lock of {run_dir} left by {_describe(stale)}, which is no longer running",
                      highlight=False)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    _HELD.add(path)
    return RunLock(path, fd)
