"""How long a test waits for a subprocess (a CLI run, a fresh interpreter) before calling it hung.

The limit only has to catch a hang, never a slow machine: CI runs on two cores that may be busy
with other work, where a CLI training run that takes 40 s on a quiet machine can take ten times
as long. `TINYLLAVA_TEST_SUBPROCESS_TIMEOUT` (seconds) overrides it.
"""

from __future__ import annotations

import os

SUBPROCESS_TIMEOUT_S = int(os.environ.get("TINYLLAVA_TEST_SUBPROCESS_TIMEOUT", "1800"))
