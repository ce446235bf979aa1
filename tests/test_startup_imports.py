"""Start-up: the training stack is imported without TorchInductor or DeepSpeed unless a run uses them, and the
functions whose compilation is deferred behave exactly as compiled ones."""

from __future__ import annotations

import subprocess
import sys

import torch

from tinyllava.testing.timeouts import SUBPROCESS_TIMEOUT_S
from tinyllava.training.lean_imports import compile_on_first_call

PROBE = """
import gc, sys
from tinyllava.training.lean_imports import import_training_stack
import_training_stack()
import bitsandbytes, peft  # installed here: what `transformers.trainer` pulls in
import torch
from accelerate import Accelerator
from tinyllava.training.runner import run_training  # noqa: F401
model = Accelerator(cpu=True).unwrap_model(torch.nn.Linear(2, 2))
print("inductor" if "torch._inductor.compile_fx" in sys.modules else "no-inductor")
print("deepspeed" if "deepspeed" in sys.modules else "no-deepspeed")
print("frozen" if gc.get_freeze_count() > 100_000 else "not-frozen")
"""


def test_training_stack_imports_leave_out_the_compiler_and_deepspeed():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["no-inductor", "no-deepspeed", "frozen"], out.stdout + out.stderr[-2000:]


def test_deferred_compile_compiles_on_the_first_call_with_the_same_options(monkeypatch):
    calls: list[tuple] = []

    def fake_compile(fn=None, **options):
        calls.append((fn, options))
        return lambda *a, **k: ("compiled", fn(*a, **k))

    monkeypatch.setattr(torch, "compile", fake_compile)

    def double(x):
        return 2 * x

    with compile_on_first_call():
        deferred = torch.compile(double, dynamic=False)
        decorated = torch.compile(dynamic=True)(double)
        module = torch.nn.Linear(1, 1)
        torch.compile(module)
    assert torch.compile is fake_compile  # put back
    assert [c[0] for c in calls] == [module]  # a module compiles at once, functions wait
    assert deferred(3) == ("compiled", 6) and decorated(4) == ("compiled", 8)
    assert deferred(5) == ("compiled", 10)  # compiled once, reused
    assert calls[1:] == [(double, {"dynamic": False}), (double, {"dynamic": True})]
