"""The root of every component: a name, a kind and a pydantic Options model that forbids unknown keys.

Component modules stay import-light (no torch at import time) so that listing, validating and
schema generation never pay for the heavy stack.
"""

from __future__ import annotations

from abc import ABC
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

KINDS: tuple[str, ...] = (
    "llm",
    "vision_tower",
    "connector",
    "chat_template",
    "recipe",
    "benchmark",
    "dataset",
)


class ComponentOptions(BaseModel):
    """Base for every component's options: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Component(ABC):  # noqa: B024 - each kind's contract adds its abstract methods
    """A configured component. Subclasses set `kind` and usually a nested `Options` model.

    Each kind's contract is an abstract base class: a plugin class that leaves one of its abstract methods
    unimplemented is refused when the registry resolves it (and reported by `tinyllava plugins check`),
    not when training reaches the missing method."""

    kind: ClassVar[str] = ""
    Options: ClassVar[type[ComponentOptions]] = ComponentOptions

    def __init__(self, options: ComponentOptions | dict[str, Any] | None = None, *, name: str = "") -> None:
        if options is None:
            options = self.Options()
        elif isinstance(options, dict):
            options = self.Options.model_validate(options)
        self.options = options
        self.name = name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, options={self.options!r})"
