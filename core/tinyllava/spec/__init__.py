"""The run spec: YAML -> pydantic RunSpec, with dotted CLI overrides and plugin-aware validation."""

from tinyllava.spec.errors import SpecError
from tinyllava.spec.overrides import apply_overrides
from tinyllava.spec.runspec import (
    ComponentSpec,
    DataSpec,
    ModelSpec,
    RunSpec,
    StageSpec,
    load_spec,
    resolve_spec,
)

__all__ = [
    "ComponentSpec",
    "DataSpec",
    "ModelSpec",
    "RunSpec",
    "SpecError",
    "StageSpec",
    "apply_overrides",
    "load_spec",
    "resolve_spec",
]
