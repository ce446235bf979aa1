"""The README's Python API snippet runs exactly as printed (against a tiny checkpoint placed where it looks)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tinyllava.testing.timeouts import SUBPROCESS_TIMEOUT_S

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_snippet() -> str:
    text = README.read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section has one python block"
    return blocks[0]


def test_readme_python_api_snippet_runs(tmp_path):
    from PIL import Image

    from tinyllava.testing import save_and_reload_tiny

    snippet = readme_snippet()
    assert "Pipeline.from_checkpoint(" in snippet and ".ask(" in snippet
    assert len([line for line in snippet.splitlines() if line.strip()]) <= 4  # two imports, load, ask
    final = tmp_path / "runs" / "quickstart" / "stage1-instruct" / "final"
    save_and_reload_tiny(final)
    (final.parent.parent / "latest").symlink_to("stage1-instruct/final")
    Image.new("RGB", (64, 64), (255, 255, 255)).save(tmp_path / "picture.png")
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT_S, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) >= 1  # the (untrained) model's answer
