"""training.onednn_caches: a bf16 stage on the CPU keeps a bounded number of oneDNN kernels, so rows of a new
length every step do not grow the process step after step."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tinyllava.testing.timeouts import SUBPROCESS_TIMEOUT_S
from tinyllava.training.onednn_caches import VARIABLES, bound_onednn_caches

# bf16 matrix multiplies on 100 row lengths (a packed batch's length changes every step); prints how much the
# heap in use grew over the last 40
PROBE = """
import ctypes, json, sys
from tinyllava.training.onednn_caches import bound_onednn_caches
import torch
if sys.argv[1] == "bounded":
    bound_onednn_caches()
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
torch.set_num_threads(1)
w = torch.randn(384, 128, dtype=torch.bfloat16, requires_grad=True)
def step(rows):
    x = torch.randn(rows, 128, dtype=torch.bfloat16, requires_grad=True)
    torch.nn.functional.linear(x, w).float().sum().backward()
for rows in range(500, 560):  # more kernels than the bounded caches hold
    step(rows)
before = libc.mallinfo2().uordblks
for rows in range(560, 600):
    step(rows)
print(json.dumps(libc.mallinfo2().uordblks - before))
"""


def _growth(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True, check=True,
                         timeout=SUBPROCESS_TIMEOUT_S)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _onednn_builds_bf16_kernels() -> bool:
    """Whether this CPU has bf16 units oneDNN builds kernels for (AVX512-BF16, AMX); an AVX2-only CPU has none,
    and its bf16 products run through plain kernels that keep nothing per shape."""
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def test_bounded_caches_stop_growing_with_new_shapes():
    unbounded, bounded = _growth("default"), _growth("bounded")
    if not _onednn_builds_bf16_kernels():  # nothing is cached per shape: neither grows, and the bound costs nothing
        assert unbounded < 20 << 20 and bounded < 20 << 20, (bounded, unbounded)
        return
    assert unbounded > 20 << 20, unbounded  # a kernel set kept for every new row length
    assert bounded < unbounded / 3, (bounded, unbounded)


def test_a_capacity_the_user_set_is_kept(monkeypatch):
    monkeypatch.setenv(VARIABLES[0], "7")
    monkeypatch.delenv(VARIABLES[1], raising=False)
    assert bound_onednn_caches() == {VARIABLES[1]: "64"}
    assert os.environ[VARIABLES[0]] == "7"


def test_the_runner_bounds_the_caches_for_a_bf16_run_only(tmp_path, monkeypatch):
    from tinyllava.spec.runspec import resolve_spec
    from tinyllava.testing import tiny_run_spec
    from tinyllava.training import runner

    monkeypatch.setattr(runner, "_run", lambda *args, **kwargs: None)  # what happens before training is enough
    for bf16 in (False, True):
        for name in VARIABLES:
            monkeypatch.delenv(name, raising=False)
        raw = tiny_run_spec(tmp_path / "runs", name=f"bf16-{bf16}")
        raw["stages"][1]["bf16"] = bf16
        runner.run_training(resolve_spec(raw))
        assert all((name in os.environ) == bf16 for name in VARIABLES)
