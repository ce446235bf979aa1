"""Make a real installed distribution on the fly: a `*.dist-info` with entry points, plus its module."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent


def make_distribution(
    root: Path,
    dist_name: str,
    plugin_id: str,
    module_source: str,
    *,
    version: str = "0.1.0",
    requires: list[str] | None = None,
    module_name: str | None = None,
) -> Path:
    """Write `<module>.py` and `<dist>-<version>.dist-info/` under root; put root on sys.path to install it."""
    root = Path(root)
    module_name = module_name or f"{dist_name.replace('-', '_')}_mod"
    (root / f"{module_name}.py").write_text(dedent(module_source))
    info = root / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    lines = ["Metadata-Version: 2.1", f"Name: {dist_name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in (requires or [])]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    (info / "entry_points.txt").write_text(f"[tinyllava.plugins]\n{plugin_id} = {module_name}\n")
    (info / "RECORD").write_text("")
    return info
