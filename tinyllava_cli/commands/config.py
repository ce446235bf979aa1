"""`tinyllava config validate|show|schema|init`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from tinyllava_cli.commands.common import console, err_console, fail


def _load(file: Path, overrides: list[str]):
    from tinyllava.spec import load_spec

    return load_spec(file, overrides)


def validate(file: Path, overrides: list[str]) -> int:
    from tinyllava.spec import SpecError

    try:
        spec = _load(file, overrides)
    except SpecError as exc:
        return fail(str(exc))
    console.print(f"[green]ok[/]: {file} is a valid run spec ({len(spec.stages)} stage(s))", highlight=False)
    return 0


def show(file: Path, overrides: list[str]) -> int:
    from tinyllava.spec import SpecError
    from tinyllava.spec.runspec import spec_to_dict

    try:
        spec = _load(file, overrides)
    except SpecError as exc:
        return fail(str(exc))
    print(yaml.safe_dump(spec_to_dict(spec), sort_keys=False))
    return 0


def schema() -> int:
    from tinyllava.spec.schema import run_spec_schema

    skipped: list[tuple[str, str, str]] = []
    print(json.dumps(run_spec_schema(skipped=skipped), indent=2))
    for kind, name, why in skipped:
        err_console.print(f"[yellow]warning:[/] {kind} {name!r} is not in the schema: {why}", highlight=False)
    if skipped:
        err_console.print("run `tinyllava plugins check --traceback` for details", highlight=False)
    return 0


PACKAGE_DIR = Path(__file__).resolve().parent.parent
# where the paper rows are: shipped inside the package when built with them, else a source checkout's configs/
PAPER_DIRS = (PACKAGE_DIR / "specs" / "paper", PACKAGE_DIR.parent / "configs" / "paper")


def paper_rows() -> dict[str, Path]:
    """Row name (the file name without .yaml) -> file, from the first folder that has any."""
    for folder in PAPER_DIRS:
        rows = {p.stem: p for p in sorted(folder.glob("*.yaml"))}
        if rows:
            return rows
    return {}


def template_file(name: str) -> Path | str:
    """The spec file for `quickstart` or `paper/<row>`, else the error message."""
    import difflib

    if name == "quickstart":
        return PACKAGE_DIR / "quickstart.yaml"
    rows = paper_rows()
    choices = ["quickstart", *(f"paper/{row}" for row in rows)]
    if name.startswith("paper/") and name.removeprefix("paper/") in rows:
        return rows[name.removeprefix("paper/")]
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    if not rows:
        return f"unknown spec {name!r}; {hint}this installation has only: quickstart (the paper rows ship in a " \
               f"source checkout's configs/paper)"
    return f"unknown spec {name!r}; {hint}choose one of: " + ", ".join(choices)


def init(name: str) -> int:
    """Print an editable copy of a built-in spec (comments kept): `tinyllava config init > my.yaml`."""
    found = template_file(name)
    if isinstance(found, str):
        return fail(found)
    sys.stdout.write(found.read_text())
    if sys.stdout.isatty():
        err_console.print(f"(from {found}; redirect it to a file: tinyllava config init {name} > my.yaml)",
                          highlight=False)
    return 0
