"""Run one `tinyllava` command in a fresh interpreter and report which heavy modules it imported.

Start-up must stay light (`tinyllava --help`, a mistyped path, a misspelt flag never import torch); tests check it
through this probe rather than timing anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tinyllava.testing.timeouts import SUBPROCESS_TIMEOUT_S

PROBE = (
    "import atexit, json, sys\n"
    "atexit.register(lambda: print('HEAVY=' + json.dumps(sorted(m for m in {heavy!r} if m in sys.modules))))\n"
    "from tinyllava_cli.app import main\n"
    "sys.argv = ['tinyllava'] + {args!r}\n"
    "main()\n"
)


def probe_cli(args: list[str], heavy: tuple[str, ...], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> tuple[subprocess.CompletedProcess, list[str]]:
    """(the finished process, the modules of `heavy` it had imported when it exited)."""
    code = PROBE.format(heavy=heavy, args=args)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S,
                          env=env if env is not None else {**os.environ, "COLUMNS": "250"}, cwd=cwd)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("HEAVY="))
    return proc, json.loads(line.removeprefix("HEAVY="))
