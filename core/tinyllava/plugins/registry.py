"""The component registry: (kind, name) -> lazy reference, filled from the plugins' hooks.

A component class is imported only when it is resolved, never when it is listed.

Names. Every component has a qualified name, `plugin:name` (the plugin id, or its distribution name, before
the colon), which always resolves to that plugin's component. A bare `name` resolves when exactly one plugin
registers it; when several do, nothing is knocked out (each plugin keeps working and every qualified name
resolves), but using the bare name is an error that lists the qualified names to choose from.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import logging
from dataclasses import dataclass
from typing import Any

import pluggy

from tinyllava.components.base import KINDS, Component
from tinyllava.plugins.hookspecs import LIFECYCLE_HOOKS, PROJECT, REGISTRATION_HOOKS, TinyLlavaHookSpecs
from tinyllava.plugins.loader import PluginRecord, check_entry_point, discover_entry_points

log = logging.getLogger(__name__)

QUALIFIER = ":"


class ComponentNotFoundError(LookupError):
    """Raised for an unknown component name; the message lists what is installed and what to install."""


class ComponentConflictError(LookupError):
    """Raised when a bare name that several plugins register is used; the message lists the qualified names."""


@dataclass(frozen=True)
class ComponentEntry:
    kind: str
    name: str
    reference: str
    plugin_id: str
    distribution: str
    version: str

    @property
    def qualified(self) -> str:
        """`plugin:name`, which resolves to this entry whatever else is installed."""
        return f"{self.plugin_id}{QUALIFIER}{self.name}"

    def load(self) -> type[Component]:
        module_name, _, attr = self.reference.partition(":")
        if not module_name or not attr:
            raise ImportError(f"{self.kind} {self.name!r}: bad reference {self.reference!r} (want 'module:Class')")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj


def split_qualified(name: str) -> tuple[str | None, str]:
    """`plugin:name` -> (plugin, name); a bare name -> (None, name)."""
    qualifier, sep, bare = name.partition(QUALIFIER)
    return (qualifier, bare) if sep else (None, name)


def _isolated(plugin_id: str, hook: str, function: Any) -> Any:
    """A lifecycle hook implementation whose failure is logged with its plugin instead of stopping the run
    and the other plugins' hooks (pluggy still calls it, so tracing, wrappers and ordering apply)."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - one plugin's hook must not stop a run
            log.warning("plugin %s: hook %s raised %s: %s", plugin_id, hook, type(exc).__name__, exc)
            return None

    return call


class _PluginNamespace:
    """What is registered with pluggy for one plugin: its hook implementations, lifecycle ones isolated."""

    def __init__(self, plugin_id: str, module: Any) -> None:
        self.__name__ = getattr(module, "__name__", plugin_id)
        for attr in dir(module):
            value = getattr(module, attr)
            if not callable(value) or not hasattr(value, f"{PROJECT}_impl"):
                continue
            opts = getattr(value, f"{PROJECT}_impl") or {}
            wrapper = opts.get("wrapper") or opts.get("hookwrapper")  # wrappers must stay generator functions
            isolate = attr in LIFECYCLE_HOOKS and not wrapper
            setattr(self, attr, _isolated(plugin_id, attr, value) if isolate else value)


class Registry:
    """All discovered plugins and the components they provide."""

    def __init__(self) -> None:
        self.plugin_manager = pluggy.PluginManager(PROJECT)
        self.plugin_manager.add_hookspecs(TinyLlavaHookSpecs)
        self.plugins: list[PluginRecord] = []
        #: every registration of a bare name, in discovery order
        self.providers: dict[tuple[str, str], list[ComponentEntry]] = {}
        #: bare names exactly one plugin registers
        self.entries: dict[tuple[str, str], ComponentEntry] = {}
        #: bare names several plugins register (each still resolves by its qualified name)
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
        provided: list[ComponentEntry] = []
        for kind, hook_name in REGISTRATION_HOOKS.items():
            impl = getattr(record.module, hook_name, None)
            if impl is None:
                continue
            try:
                names = impl() or {}
                if not isinstance(names, dict):
                    raise TypeError(f"{hook_name} must return a dict of name -> 'module:Class'")
                bad = sorted(str(n) for n in names if QUALIFIER in str(n) or not str(n))
                if bad:
                    raise ValueError(f"{hook_name}: component names may not be empty or contain "
                                     f"{QUALIFIER!r}: {', '.join(bad)}")
            except Exception as exc:  # noqa: BLE001 - a bad plugin must not stop the others
                record.status = "failed"
                record.error = f"hook {hook_name} raised {type(exc).__name__}: {exc}"
                return
            for name, reference in sorted(names.items()):
                provided.append(
                    ComponentEntry(kind, str(name), str(reference), record.plugin_id, record.distribution,
                                   record.version)
                )
        try:
            self.plugin_manager.register(_PluginNamespace(record.plugin_id, record.module), name=record.plugin_id)
        except Exception as exc:  # noqa: BLE001 - a bad plugin must not stop the others
            record.status, record.error = "failed", f"hook validation failed: {type(exc).__name__}: {exc}"
            return
        for entry in provided:
            record.components.setdefault(entry.kind, []).append(entry.name)
            self._add_entry(entry)

    def _add_entry(self, entry: ComponentEntry) -> None:
        key = (entry.kind, entry.name)
        providers = self.providers.setdefault(key, [])
        providers.append(entry)
        if len(providers) == 1:
            self.entries[key] = entry
            return
        self.entries.pop(key, None)
        self.conflicts[key] = list(providers)
        message = conflict_message(key, providers)
        for rec in self.plugins:
            if any(e.plugin_id == rec.plugin_id for e in providers) and message not in rec.warnings:
                rec.warnings = [w for w in rec.warnings if not w.startswith(f"{key[0]} {key[1]!r} ")] + [message]

    # -- lookups -------------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        """Every name that resolves: bare names one plugin registers, and the qualified names of shared ones."""
        bare = [name for (k, name) in self.entries if k == kind]
        shared = [e.qualified for (k, _), entries in self.conflicts.items() if k == kind for e in entries]
        return sorted(bare + shared)

    def all_entries(self) -> list[ComponentEntry]:
        """Every registration, shared names included, sorted by kind, name and plugin."""
        every = [e for entries in self.providers.values() for e in entries]
        return sorted(every, key=lambda e: (e.kind, e.name, e.plugin_id))

    def entry(self, kind: str, name: str) -> ComponentEntry:
        if kind not in KINDS:
            raise ComponentNotFoundError(f"unknown component kind {kind!r}; kinds are {', '.join(KINDS)}")
        qualifier, bare = split_qualified(name)
        key = (kind, bare)
        if qualifier is not None:
            return self._qualified_entry(kind, qualifier, bare)
        if key in self.conflicts:
            raise ComponentConflictError(conflict_message(key, self.conflicts[key]))
        if key not in self.entries:
            raise ComponentNotFoundError(self.unknown_message(kind, name))
        return self.entries[key]

    def _qualified_entry(self, kind: str, qualifier: str, bare: str) -> ComponentEntry:
        from packaging.utils import canonicalize_name

        wanted = canonicalize_name(qualifier)
        matches = [e for e in self.providers.get((kind, bare), [])
                   if qualifier == e.plugin_id or wanted == canonicalize_name(e.distribution)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:  # two distributions use the same plugin id: the distribution name tells them apart
            raise ComponentConflictError(
                f"{kind} {qualifier}{QUALIFIER}{bare!r} is ambiguous: " + "; ".join(
                    f"use {e.distribution}{QUALIFIER}{bare}" for e in matches))
        raise ComponentNotFoundError(self.unknown_message(kind, f"{qualifier}{QUALIFIER}{bare}"))

    def component_class(self, kind: str, name: str) -> type[Component]:
        """The class, checked against its kind's contract (ComponentContractError says what is missing)."""
        from tinyllava.plugins.contracts import check_contract

        entry = self.entry(kind, name)
        cls = entry.load()
        check_contract(kind, entry.name, cls, f"{entry.reference}, from {entry.distribution} {entry.version}")
        return cls

    def create(self, kind: str, name: str, options: dict[str, Any] | None = None) -> Component:
        entry = self.entry(kind, name)
        return self.component_class(kind, name)(options or {}, name=entry.name)

    def call_lifecycle(self, hook: str, **kwargs: Any) -> None:
        """Run a lifecycle hook through pluggy (`pm.hook.<hook>`); a failing implementation is logged with its
        plugin and the others still run."""
        if hook not in LIFECYCLE_HOOKS:
            raise ValueError(f"unknown lifecycle hook {hook!r}; hooks are {', '.join(LIFECYCLE_HOOKS)}")
        getattr(self.plugin_manager.hook, hook)(**kwargs)

    # -- messages ------------------------------------------------------------------------------
    def unknown_message(self, kind: str, name: str) -> str:
        """What is wrong and how to fix it: close names, the distribution that provides it, plugins that did
        not load (and so may be the one that provides it)."""
        from tinyllava.plugins.catalog import FIRST_PARTY, first_party_providers

        qualifier, bare = split_qualified(name)
        installed = self.names(kind)
        close = difflib.get_close_matches(name, installed, n=1, cutoff=0.5)
        parts = [f"unknown {kind} {name!r}" + (f"; did you mean {close[0]!r}?" if close else "")]
        parts.append(f"Installed {kind} components: {', '.join(installed) if installed else 'none'}")
        by_dist = {r.distribution: r for r in self.plugins}
        for dist in first_party_providers(kind, bare):
            rec = by_dist.get(dist)
            if rec is None:
                parts.append(f"{kind} {bare!r} is provided by {dist}, which is not installed: pip install {dist}")
            elif rec.status != "ok":
                parts.append(f"{kind} {bare!r} is provided by {dist} {rec.version}, which is installed but "
                             f"{rec.status}: {rec.error}")
        # a third-party plugin that did not load may be the provider; first-party ones are known from the catalog
        unloaded = [r for r in self.plugins if r.status != "ok" and r.distribution not in FIRST_PARTY
                    and (qualifier is None or qualifier in (r.plugin_id, r.distribution))]
        if unloaded:
            shown = "; ".join(f"{r.distribution} {r.version} ({r.status}: {r.error})" for r in unloaded[:3])
            more = f"; and {len(unloaded) - 3} more (tinyllava plugins list)" if len(unloaded) > 3 else ""
            parts.append(f"installed plugins that did not load, and may provide it: {shown}{more}")
        return ". ".join(parts)


def conflict_message(key: tuple[str, str], entries: list[ComponentEntry]) -> str:
    who = " and ".join(f"{e.distribution} {e.version} (plugin {e.plugin_id!r})" for e in entries)
    choices = ", ".join(repr(e.qualified) for e in entries)
    return (
        f"{key[0]} {key[1]!r} is registered by {who}; name one of them with its qualified name ({choices}), "
        f"or uninstall one or block it with TINYLLAVA_PLUGINS_BLOCK"
    )


def unknown_message(kind: str, name: str, installed: list[str]) -> str:
    """The unknown-name message without a registry (kept for callers that have only the names)."""
    close = difflib.get_close_matches(name, installed, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(installed) if installed else "none"
    return f"unknown {kind} {name!r}{hint}. Installed {kind} components: {listed}"


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
