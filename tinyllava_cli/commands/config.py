"""`tinyllava config validate|show|schema`."""

from __future__ import annotations

import json
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
