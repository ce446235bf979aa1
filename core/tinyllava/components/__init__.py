"""The contracts every plugin component implements, one module per kind."""

from tinyllava.components.base import KINDS, Component, ComponentOptions

__all__ = ["KINDS", "Component", "ComponentOptions"]
