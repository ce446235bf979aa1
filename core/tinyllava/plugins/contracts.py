"""Checks that a registered class honours its kind's contract, run when the registry resolves it.

The contracts are abstract base classes (`tinyllava.api`): a class missing an abstract method, registered
under the wrong kind, or whose Options do not derive from the project's base (which refuses unknown keys)
is refused with one message that says what to implement, instead of failing when training reaches it.
`tinyllava plugins check` also validates every Options default (pydantic does not, by itself).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Annotated, Any

from tinyllava.components.base import Component, ComponentOptions

CONTRACTS: dict[str, str] = {
    "llm": "tinyllava.components.llm:LLM",
    "vision_tower": "tinyllava.components.vision_tower:VisionTower",
    "connector": "tinyllava.components.connector:Connector",
    "chat_template": "tinyllava.components.chat_template:ChatTemplate",
    "recipe": "tinyllava.components.recipe:Recipe",
    "benchmark": "tinyllava.components.benchmark:Benchmark",
    "dataset": "tinyllava.components.dataset:Dataset",
}


class ComponentContractError(TypeError):
    """A registered class does not honour its kind's contract; the message says what to change."""


def contract_of(kind: str) -> type[Component]:
    module, _, name = CONTRACTS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def _signature(cls: type, method: str) -> str:
    try:
        params = list(inspect.signature(getattr(cls, method)).parameters)
    except (TypeError, ValueError):
        return f"{method}(...)"
    return f"{method}({', '.join(p for p in params if p != 'self')})"


def contract_problems(kind: str, cls: Any) -> list[str]:
    """What keeps `cls` from being a `kind` component (empty: nothing)."""
    contract = contract_of(kind)
    if not isinstance(cls, type) or not issubclass(cls, contract):
        return [f"it is {cls!r}, not a subclass of tinyllava.api.{contract.__name__} (the {kind} contract)"]
    problems = []
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        methods = ", ".join(_signature(cls, m) for m in missing)
        problems.append(f"{cls.__name__} does not implement {methods} (abstract in the {kind} contract "
                        f"{contract.__name__}; see CONTRIBUTING.md, 'Contracts')")
    options = getattr(cls, "Options", None)
    if not isinstance(options, type) or not issubclass(options, ComponentOptions):
        problems.append(f"{cls.__name__}.Options must derive from tinyllava.api.ComponentOptions "
                        f"(which refuses unknown keys)")
    elif options.model_config.get("extra") != "forbid":
        problems.append(f"{cls.__name__}.Options sets extra={options.model_config.get('extra')!r}; "
                        f"it must refuse unknown keys (extra='forbid', as ComponentOptions does)")
    return problems


def check_contract(kind: str, name: str, cls: Any, where: str) -> None:
    problems = contract_problems(kind, cls)
    if problems:
        raise ComponentContractError(f"{kind} {name!r} ({where}): " + "; ".join(problems))


def default_problems(options: type[ComponentOptions]) -> list[str]:
    """Fields whose default value does not validate against the field's own type and constraints."""
    from pydantic import TypeAdapter, ValidationError

    problems = []
    for field_name, field in options.model_fields.items():
        if field.is_required():
            continue
        default = field.get_default(call_default_factory=True)
        annotation: Any = field.annotation
        if field.metadata:
            annotation = Annotated[(annotation, *field.metadata)]  # type: ignore[valid-type]
        try:
            TypeAdapter(annotation).validate_python(default)
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"] if exc.errors() else str(exc)
            problems.append(f"{options.__name__}.{field_name}: default {default!r} is invalid: {reason}")
        except Exception as exc:  # noqa: BLE001 - an annotation pydantic cannot adapt on its own
            problems.append(f"{options.__name__}.{field_name}: cannot check the default: {exc}")
    return problems
