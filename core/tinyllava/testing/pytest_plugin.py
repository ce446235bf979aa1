"""pytest plugin (entry point `pytest11: tinyllava`): the conformance kits get pytest's assertion rewriting.

pytest rewrites `assert` statements only in test modules and in modules registered before they are imported;
the kits live in an installed package, so without this a failing kit check outside the repo would say only
`AssertionError`. Loaded by pytest at start-up, before any test module imports a kit.
"""

from __future__ import annotations

import pytest

KIT_MODULES = ("tinyllava.testing.conformance", "tinyllava.testing.families", "tinyllava.testing.gguf")

pytest.register_assert_rewrite(*KIT_MODULES)
