"""Shared test setup for tests/ and every plugin's tests.

One torch thread: with another process on the other core, two threads made a training step 60x slower.
"""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _one_thread():
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def deepspeed_ops():
    """DeepSpeed's C++ ops, built once per session before any test starts a DeepSpeed training process (a cold
    build inside a timed subprocess takes minutes on a busy machine)."""
    from tinyllava.testing.deepspeed_ops import build_deepspeed_ops

    return build_deepspeed_ops()


@pytest.fixture
def fresh_registry():
    """The registry reloaded from what is installed now; reset again afterwards."""
    from tinyllava.plugins.registry import get_registry, reset_registry

    reset_registry()
    yield get_registry()
    reset_registry()
