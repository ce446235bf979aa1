"""`tinyllava plugins new KIND NAME [--dir DIR]`: scaffold an out-of-tree plugin distribution."""

from __future__ import annotations

from pathlib import Path

from tinyllava_cli.commands.common import console, fail


def plugins_new(kind: str, name: str, directory: Path) -> int:
    from tinyllava.plugins.scaffold import ScaffoldError, scaffold

    try:
        root = scaffold(kind, name, directory)
    except ScaffoldError as exc:
        return fail(str(exc))
    console.print(f"wrote {root}", highlight=False)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        console.print(f"  {path.relative_to(root)}", highlight=False)
    console.print(
        "next:\n"
        f"  cd {root}\n"
        "  pip install -e .                 # registers the entry point in this environment\n"
        f"  tinyllava plugins check {name}\n"
        "  python -m pytest tests           # the conformance kit and the plugin's own tests",
        highlight=False,
    )
    return 0
