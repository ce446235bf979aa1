"""Fault injection for reliability tests: SIGKILL a forked copy of this process at a chosen call.

`killed_in_child(action, points)` forks; the child wraps each kill point's function so that the process
SIGKILLs itself just before or just after the named call, then runs `action`. The parent waits and gets
whether the child died where it should. Forking keeps this cheap (no new interpreter, no re-import, the
model already built) while the kill itself is real: no `finally`, no `atexit`, no flush runs in the child.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class KillPoint:
    """Kill the process `when` ("before" or "after") the `nth` call of `owner.attr`."""

    name: str
    owner: Any
    attr: str
    when: str = "after"
    nth: int = 1
    # for "during": run this instead of the call, then die (e.g. remove one file of many)
    during: Callable[..., Any] | None = None


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: KillPoint) -> None:
    """Wrap the kill point's function (in this process: only ever called in a forked child)."""
    original = getattr(point.owner, point.attr)
    calls = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] != point.nth:
            return original(*args, **kwargs)
        if point.when == "before":
            _die()
        if point.when == "during" and point.during is not None:
            point.during(*args, **kwargs)
            _die()
        result = original(*args, **kwargs)
        _die()
        return result

    setattr(point.owner, point.attr, wrapper)


def killed_in_child(action: Callable[[], Any], points: list[KillPoint]) -> bool:
    """Run `action` in a forked child with `points` installed; True when the child died by SIGKILL."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns into the caller
        code = 0
        try:
            for point in points:
                install(point)
            action()
        except BaseException:  # noqa: BLE001 - the parent only needs to know the child did not die where expected
            import traceback

            traceback.print_exc()  # shown by the test runner with the failure
            code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
