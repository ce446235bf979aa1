"""Run a benchmark child on another checkout's code: its core, CLI and plugins first on PYTHONPATH."""

from __future__ import annotations

import os
from pathlib import Path


def checkout_pythonpath(src: Path | None) -> str:
    """Another checkout's core, CLI and plugins first on the path (the editable installs come after)."""
    parts = []
    if src is not None:
        parts += [str(src / "core"), str(src)]
        parts += [str(p) for p in sorted((src / "plugins").glob("tinyllava-plugin-*")) if p.is_dir()]
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(parts)
