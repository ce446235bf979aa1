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


def _inner_model(annotation: Any) -> Any:
    """The pydantic model inside an annotation such as `StageSpec`, `list[StageSpec]` or `DataSpec | None`."""
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def fields_at(model: Any, loc: tuple[Any, ...] | list[Any]) -> list[str]:
    """The field names allowed where `loc` points (the last entry is the field itself); [] when unknown."""
    cls = _inner_model(model)
    for part in list(loc)[:-1]:
        if isinstance(part, int) or cls is None:
            continue
        field = cls.model_fields.get(part)
        cls = _inner_model(field.annotation) if field is not None else None
    return list(cls.model_fields) if cls is not None else []


# names people bring from the Hugging Face Trainer or TinyLLaVA Factory scripts, and ours
SYNONYMS = {"learning_rate": "lr", "num_train_epochs": "epochs", "num_epochs": "epochs",
            "per_device_train_batch_size": "batch_size", "gradient_accumulation_steps": "grad_accum",
            "lr_scheduler_type": "scheduler", "warmup_steps": "warmup_ratio", "output": "output_dir",
            "threads": "num_threads", "data_path": "json_path", "image_folder": "image_root"}


def did_you_mean(name: str, choices: list[str]) -> str:
    """`; did you mean 'lr'?` for a close spelling or a known synonym, else the allowed names when there are few."""
    import difflib

    if SYNONYMS.get(name) in choices:
        return f"; did you mean {SYNONYMS[name]!r}?"
    close = difflib.get_close_matches(name, choices, n=2, cutoff=0.6)
    if close:
        return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    if 0 < len(choices) <= 12:
        return "; known fields: " + ", ".join(choices)
    return ""


def pydantic_problems(exc: Any, prefix: str = "", model: Any = None) -> list[str]:
    """Turn a pydantic ValidationError into one readable line per problem; with `model` (the class validated),
    an unknown field names the closest known one."""
    problems = []
    for err in exc.errors():
        loc = format_loc(err.get("loc", ()), prefix)
        value = err.get("input")
        if err.get("type") == "extra_forbidden":
            raw_loc = err.get("loc", ())
            hint = did_you_mean(str(raw_loc[-1]), fields_at(model, raw_loc)) if model is not None and raw_loc else ""
            problems.append(f"{loc}: unknown field (value {value!r}){hint or '; remove it or check its spelling'}")
        elif err.get("type") == "missing":
            problems.append(f"{loc}: required field is missing")
        else:
            problems.append(f"{loc}: {err.get('msg')} (got {value!r})")
    return problems
