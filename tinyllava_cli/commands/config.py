"""`tinyllava config validate|show|schema`."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tinyllava_cli.commands.common import console, fail


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

    print(json.dumps(run_spec_schema(), indent=2))
    return 0
