"""Dotted overrides (`--set stages.0.lr=1e-3`) applied to the raw spec before validation.

The value follows YAML, so a whole mapping or list can be given (`--set 'model.connector={name: linear}'`
replaces the slot, dropping the old component's options). `KEY=~delete` removes a key, or a list item.
"""

from __future__ import annotations

from typing import Any

import yaml

from tinyllava.spec.errors import SpecError


def parse_value(text: str) -> Any:
    """YAML scalar rules: 1e-3 -> float, true -> bool, [a, b] -> list, anything else -> str."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and _looks_like_float(value):
        return float(value)
    return value


def _looks_like_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return any(c in text.lower() for c in "e.")


DELETE = "~delete"


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        if "=" not in item:
            raise SpecError([f"override {item!r}: expected KEY=VALUE, e.g. stages.0.lr=1e-3 "
                             f"(or KEY={DELETE} to remove a key)"])
        path, _, text = item.partition("=")
        if text.strip() == DELETE:
            delete_path(raw, path.strip())
        else:
            set_path(raw, path.strip(), parse_value(text))
    return raw


def _parent(raw: dict[str, Any], parts: list[str], *, create: bool) -> tuple[Any, str]:
    """(the container that holds the path's last part, that part); `create` makes missing mappings on the way."""
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        node = _child(node, part, parts[: i + 1], create=create)
    return node, parts[-1]


def delete_path(raw: dict[str, Any], path: str) -> None:
    """Remove a key (or a list item); one that is not there is an error, so a typo does not pass silently."""
    parts = path.split(".")
    node, last = _parent(raw, parts, create=False)
    if isinstance(node, list):
        del node[_index(last, node, parts)]
    elif isinstance(node, dict):
        if last not in node:
            known = ", ".join(str(k) for k in node) or "nothing"
            raise SpecError([f"override {path}={DELETE}: there is no {last!r} to remove (here: {known})"])
        del node[last]
    else:
        raise SpecError([f"override {path}={DELETE}: {'.'.join(parts[:-1])} is a {type(node).__name__}, "
                         f"not a mapping"])


def set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node, last = _parent(raw, parts, create=True)
    if isinstance(node, list):
        index = _index(last, node, parts)
        node[index] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise SpecError([f"override {path}: {'.'.join(parts[:-1])} is a {type(node).__name__}, not a mapping"])


def _index(part: str, node: list[Any], parts: list[str]) -> int:
    try:
        index = int(part)
    except ValueError:
        raise SpecError([f"override {'.'.join(parts)}: {part!r} must be a list index"]) from None
    if not -len(node) <= index < len(node):
        raise SpecError([f"override {'.'.join(parts)}: index {index} out of range (list has {len(node)} items)"])
    return index


def _child(node: Any, part: str, so_far: list[str], create: bool) -> Any:
    if isinstance(node, list):
        return node[_index(part, node, so_far)]
    if isinstance(node, dict):
        if part not in node or node[part] is None:
            if not create:
                raise SpecError([f"override: {'.'.join(so_far)} does not exist"])
            node[part] = {}
        return node[part]
    raise SpecError([f"override: {'.'.join(so_far[:-1])} is a {type(node).__name__}, cannot set {part!r}"])
