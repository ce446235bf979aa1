"""Third-party noise is hidden unless --verbose; free cores decide the default thread count; files follow umask."""

from __future__ import annotations

import logging
import os

from tinyllava.training.threads import busy_cores, choose_threads
from tinyllava_cli.commands import quiet


def _emitted(logger_name: str, message: str) -> list[str]:
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger = logging.getLogger(logger_name)
    handler = Keep()
    logger.addHandler(handler)
    try:
        logger.warning(message)
    finally:
        logger.removeHandler(handler)
    return seen


def _drop_installed_filters() -> list[tuple[logging.Logger, logging.Filter]]:
    """Remove the noise filters an earlier in-process CLI call installed (the suite shares loggers)."""
    removed = []
    for name, _, _ in quiet.NOISE:
        logger = logging.getLogger(name)
        for f in [f for f in logger.filters if isinstance(f, quiet._DropNoise)]:
            logger.removeFilter(f)
            removed.append((logger, f))
    return removed


def test_known_noise_is_dropped_and_the_rest_kept(monkeypatch):
    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    earlier = _drop_installed_filters()
    ds = "Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to detect it."
    tv = "`CLIPImageProcessor` requires torchvision (not installed); falling back to `CLIPImageProcessorPil`"
    assert _emitted("DeepSpeed", ds) == [ds]
    try:
        assert quiet.install() is True
        assert _emitted("DeepSpeed", ds) == []
        assert _emitted("transformers.utils.import_utils", tv) == []
        assert _emitted("DeepSpeed", "ZeRO stage 3 needs more memory") == ["ZeRO stage 3 needs more memory"]
    finally:
        _drop_installed_filters()
    monkeypatch.setenv(quiet.VERBOSE_ENV, "1")
    try:
        assert quiet.install() is False and _emitted("DeepSpeed", ds) == [ds]
    finally:
        for logger, f in earlier:
            logger.addFilter(f)


def test_thread_choice_counts_free_cores():
    assert busy_cores(0.3) == 0 and busy_cores(1.4) == 1 and busy_cores(7.2) == 7
    idle = choose_threads(None, cores=2, load=0.2, processes=1, env={})
    assert idle.threads == 2 and idle.reason == "2 core(s), 0 busy with other work"
    assert choose_threads("auto", cores=2, load=1.3, processes=1, env={}).threads == 1  # another process on a core
    assert choose_threads(None, cores=2, load=9.0, processes=1, env={}).threads == 1  # never fewer than one
    assert choose_threads(None, cores=8, load=0.0, processes=2, env={}).threads == 4  # split among processes
    assert choose_threads(3, cores=2, load=5.0, env={}).threads == 3  # the spec decides
    left = choose_threads(None, cores=2, load=0.0, env={"OMP_NUM_THREADS": "1"})
    assert left.threads is None and left.reason == "OMP_NUM_THREADS=1"
    assert choose_threads("auto", cores=2, load=0.0, processes=1, env={"OMP_NUM_THREADS": "1"}).threads == 2


def test_checkpoint_files_follow_umask(tmp_path):
    from tinyllava.testing import save_and_reload_tiny

    old = os.umask(0o022)
    try:
        save_and_reload_tiny(tmp_path / "ckpt")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "ckpt").iterdir() if p.is_file()}
    assert modes["model.safetensors"] == 0o644 and set(modes.values()) == {0o644}, modes
