"""Test helpers for tinyllava and third-party plugins; the conformance kit is in `tinyllava.testing.conformance`."""

from tinyllava.testing.distributions import make_distribution
from tinyllava.testing.tiny import TINY_MODEL, save_and_reload_tiny, tiny_run_spec

__all__ = ["TINY_MODEL", "make_distribution", "save_and_reload_tiny", "tiny_run_spec"]
