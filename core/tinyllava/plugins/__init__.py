"""Plugin discovery (entry points), isolation, the pluggy hooks and the component registry."""

from tinyllava.plugins.hookspecs import hookimpl
from tinyllava.plugins.registry import ComponentEntry, Registry, get_registry, reset_registry

__all__ = ["hookimpl", "ComponentEntry", "Registry", "get_registry", "reset_registry"]
