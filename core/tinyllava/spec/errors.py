"""One error type for every spec problem, so the CLI can print it without a traceback."""

from __future__ import annotations

from typing import Any


class SpecError(ValueError):
    """A spec problem; each entry names the field path, the bad value and the fix."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        where = f" in {source}" if source else ""
        super().__init__(f"invalid run spec{where}:\n" + "\n".join(f"  - {p}" for p in problems))


def format_loc(loc: tuple[Any, ...] | list[Any], prefix: str = "") -> str:
    parts = [prefix] if prefix else []
    parts += [str(p) for p in loc]
    return ".".join(parts) or "<root>"


def pydantic_problems(exc: Any, prefix: str = "") -> list[str]:
    """Turn a pydantic ValidationError into one readable line per problem."""
    problems = []
    for err in exc.errors():
        loc = format_loc(err.get("loc", ()), prefix)
        value = err.get("input")
        if err.get("type") == "extra_forbidden":
            problems.append(f"{loc}: unknown field (value {value!r}); remove it or check its spelling")
        elif err.get("type") == "missing":
            problems.append(f"{loc}: required field is missing")
        else:
            problems.append(f"{loc}: {err.get('msg')} (got {value!r})")
    return problems
