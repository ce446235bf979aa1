"""`tinyllava config init` writes an editable copy of a built-in spec; `--set KEY=~delete` removes a key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tinyllava.testing.timeouts import SUBPROCESS_TIMEOUT_S

ROOT = Path(__file__).resolve().parent.parent
EXE = str(Path(sys.executable).parent / "tinyllava")


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S,
                          env={**os.environ, "COLUMNS": "250"}, cwd=cwd)


def test_config_init_quickstart_is_the_builtin_spec_and_validates(tmp_path):
    proc = cli("config", "init", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (ROOT / "tinyllava_cli" / "quickstart.yaml").read_text()
    (tmp_path / "my.yaml").write_text(proc.stdout)
    ok = cli("config", "validate", "my.yaml", "--set", "num_threads=~delete", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    shown = yaml.safe_load(cli("config", "show", "my.yaml", "--set", "num_threads=~delete", cwd=tmp_path).stdout)
    assert shown["num_threads"] is None and shown["name"] == "quickstart"


def test_config_init_paper_row_and_unknown_names(tmp_path):
    row = "tinyllava-phi-2-siglip-base"
    proc = cli("config", "init", f"paper/{row}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (ROOT / "configs" / "paper" / f"{row}.yaml").read_text()
    bad = cli("config", "init", "paper/tinyllava-phi-2-siglip-bas", cwd=tmp_path)
    assert bad.returncode == 2 and f"did you mean 'paper/{row}'?" in bad.stderr and "quickstart" in bad.stderr
