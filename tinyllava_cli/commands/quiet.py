"""Hide third-party log lines a user cannot act on (shown again with `tinyllava --verbose` or TINYLLAVA_VERBOSE=1).

Each entry names the library's logger and the start of the message; filters sit on the logger objects
themselves, installed before the libraries are imported (a library that later configures its logger keeps the
filter), so nothing heavy is imported here.
"""

from __future__ import annotations

import logging
import os

VERBOSE_ENV = "TINYLLAVA_VERBOSE"

# (logger name, message start, why it is noise)
NOISE: tuple[tuple[str, str, str], ...] = (
    ("transformers.utils.import_utils", "`", "requires torchvision: the PIL image processor it falls back to is "
     "the one our checkpoints use"),
    ("DeepSpeed", "Setting accelerator to CPU", "DeepSpeed probing for a GPU on a CPU machine"),
    ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward", "an optional bitsandbytes kernel "
     "package; the CPU path works without it"),
)
NEEDLES = {"transformers.utils.import_utils": "requires torchvision (not installed)"}


class _DropNoise(logging.Filter):
    def __init__(self, start: str, needle: str | None) -> None:
        super().__init__()
        self.start = start
        self.needle = needle

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is not ours to judge
            return True
        if self.needle is not None:
            return self.needle not in message
        return not message.startswith(self.start)


def install(verbose: bool | None = None) -> bool:
    """Install the filters unless verbose; returns whether they were installed."""
    if verbose is None:
        verbose = os.environ.get(VERBOSE_ENV, "") not in ("", "0")
    if verbose:
        return False
    for name, start, _ in NOISE:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise(start, NEEDLES.get(name)))
    return True
