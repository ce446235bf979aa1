"""The component registry: (kind, name) -> lazy reference, filled from the plugins' hooks.

A component class is imported only when it is resolved, never when it is listed.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from dataclasses import dataclass
from typing import Any

import pluggy

from tinyllava.components.base import KINDS, Component
from tinyllava.plugins.hookspecs import PROJECT, REGISTRATION_HOOKS, TinyLlavaHookSpecs
from tinyllava.plugins.loader import PluginRecord, check_entry_point, discover_entry_points

log = logging.getLogger(__name__)


class ComponentNotFoundError(LookupError):
    """Raised for an unknown component name; the message lists what is installed."""


class ComponentConflictError(LookupError):
    """Raised when two distributions registered the same (kind, name)."""


@dataclass(frozen=True)
class ComponentEntry:
    kind: str
    name: str
    reference: str
    plugin_id: str
    distribution: str
    version: str

    def load(self) -> type[Component]:
        module_name, _, attr = self.reference.partition(":")
        if not module_name or not attr:
            raise ImportError(f"{self.kind} {self.name!r}: bad reference {self.reference!r} (want 'module:Class')")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj


class Registry:
    """All discovered plugins and the components they provide."""

    def __init__(self) -> None:
        self.plugin_manager = pluggy.PluginManager(PROJECT)
        self.plugin_manager.add_hookspecs(TinyLlavaHookSpecs)
        self.plugins: list[PluginRecord] = []
        self.entries: dict[tuple[str, str], ComponentEntry] = {}
        self.conflicts: dict[tuple[str, str], list[ComponentEntry]] = {}

    # -- loading -------------------------------------------------------------------------------
    def load_installed(self) -> Registry:
        for ep in discover_entry_points():
            self.add_record(check_entry_point(ep))
        return self

    def add_record(self, record: PluginRecord) -> None:
        self.plugins.append(record)
        if record.status != "ok":
            return
        try:
            self.plugin_manager.register(record.module, name=record.plugin_id)
        except Exception as exc:  # noqa: BLE001 - a bad plugin must not stop the others
            record.status, record.error = "failed", f"hook validation failed: {type(exc).__name__}: {exc}"
            return
        provided: list[ComponentEntry] = []
        for kind, hook_name in REGISTRATION_HOOKS.items():
            impl = getattr(record.module, hook_name, None)
            if impl is None:
                continue
            try:
                names = impl() or {}
                if not isinstance(names, dict):
                    raise TypeError(f"{hook_name} must return a dict of name -> 'module:Class'")
            except Exception as exc:  # noqa: BLE001
                self.plugin_manager.unregister(record.module)
                record.status = "failed"
                record.error = f"hook {hook_name} raised {type(exc).__name__}: {exc}"
                return
            for name, reference in sorted(names.items()):
                provided.append(
                    ComponentEntry(kind, str(name), str(reference), record.plugin_id, record.distribution,
                                   record.version)
                )
        for entry in provided:
            record.components.setdefault(entry.kind, []).append(entry.name)
            key = (entry.kind, entry.name)
            if key in self.conflicts:
                self.conflicts[key].append(entry)
            elif key in self.entries:
                first = self.entries.pop(key)
                self.conflicts[key] = [first, entry]
            else:
                self.entries[key] = entry
        for key, entries in self.conflicts.items():
            for e in entries:
                for rec in self.plugins:
                    if rec.plugin_id == e.plugin_id and rec.status == "ok":
                        rec.status = "conflict"
                        rec.error = conflict_message(key, entries)

    # -- lookups -------------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(name for (k, name) in self.entries if k == kind)

    def entry(self, kind: str, name: str) -> ComponentEntry:
        if kind not in KINDS:
            raise ComponentNotFoundError(f"unknown component kind {kind!r}; kinds are {', '.join(KINDS)}")
        key = (kind, name)
        if key in self.conflicts:
            raise ComponentConflictError(conflict_message(key, self.conflicts[key]))
        if key not in self.entries:
            raise ComponentNotFoundError(unknown_message(kind, name, self.names(kind)))
        return self.entries[key]

    def component_class(self, kind: str, name: str) -> type[Component]:
        return self.entry(kind, name).load()

    def create(self, kind: str, name: str, options: dict[str, Any] | None = None) -> Component:
        cls = self.component_class(kind, name)
        return cls(options or {}, name=name)

    def call_lifecycle(self, hook: str, **kwargs: Any) -> None:
        """Run a lifecycle hook in every plugin; a failing hook is logged with its plugin, not fatal."""
        caller = getattr(self.plugin_manager.hook, hook)
        for impl in caller.get_hookimpls():
            try:
                impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
            except Exception as exc:  # noqa: BLE001
                log.warning("plugin %s: hook %s raised %s: %s", impl.plugin_name, hook, type(exc).__name__, exc)


def conflict_message(key: tuple[str, str], entries: list[ComponentEntry]) -> str:
    who = " and ".join(f"{e.distribution} {e.version} (plugin {e.plugin_id!r})" for e in entries)
    return (
        f"{key[0]} {key[1]!r} is registered by {who}; uninstall one of them or block it with "
        f"TINYLLAVA_PLUGINS_BLOCK"
    )


def unknown_message(kind: str, name: str, installed: list[str]) -> str:
    close = difflib.get_close_matches(name, installed, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(installed) if installed else "none"
    return f"unknown {kind} {name!r}{hint} Installed {kind} components: {listed}"


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry().load_installed()
    return _REGISTRY


def reset_registry() -> None:
    """Forget the loaded plugins (tests, or after installing a plugin at run time)."""
    global _REGISTRY
    _REGISTRY = None
