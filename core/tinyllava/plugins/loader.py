"""Find plugins through entry points and load each one in isolation.

Unlike pluggy's load_setuptools_entrypoints, one broken plugin never stops the others: its
distribution, version and error are recorded and reported (`tinyllava plugins list`).
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tinyllava import __version__
from tinyllava.plugins.hookspecs import ENTRY_POINT_GROUP

API_ATTRIBUTE = "TINYLLAVA_PLUGIN_API"
ALLOW_ENV = "TINYLLAVA_PLUGINS_ALLOW"
BLOCK_ENV = "TINYLLAVA_PLUGINS_BLOCK"


@dataclass
class PluginRecord:
    """What we know about one discovered plugin, healthy or not."""

    plugin_id: str
    distribution: str
    version: str
    entry_point: str
    status: str = "pending"  # ok | failed | incompatible | blocked
    error: str = ""
    module: Any = None
    components: dict[str, list[str]] = field(default_factory=dict)
    #: problems that leave the plugin usable: a bare name shared with another plugin, no declared plugin API
    warnings: list[str] = field(default_factory=list)
    plugin_api: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "plugin": self.plugin_id,
            "distribution": self.distribution,
            "version": self.version,
            "entry_point": self.entry_point,
            "status": self.status,
            "error": self.error,
            "components": self.components,
            "warnings": self.warnings,
            "plugin_api": self.plugin_api,
        }


def _env_set(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _tinyllava_requirement(dist: metadata.Distribution | None) -> Requirement | None:
    if dist is None:
        return None
    for raw in dist.requires or []:
        try:
            req = Requirement(raw)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) == "tinyllava" and not req.marker:
            return req
    return None


def discover_entry_points() -> list[metadata.EntryPoint]:
    """All entry points of our group, in a deterministic order (by plugin id, then distribution)."""
    eps = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    seen: set[tuple[str, str]] = set()
    unique: list[metadata.EntryPoint] = []
    for ep in eps:
        dist_name = ep.dist.name if ep.dist is not None else ""
        key = (ep.name, dist_name)
        if key in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(key)
        unique.append(ep)
    return sorted(unique, key=lambda ep: (ep.name, ep.dist.name if ep.dist is not None else ""))


def check_entry_point(ep: metadata.EntryPoint) -> PluginRecord:
    """Build the record for one entry point. Blocked plugins, and plugins whose `Requires-Dist: tinyllava` range
    excludes this version, are never imported; the plugin API version is read from the (import-light) entry
    module, and a plugin written for another major is recorded as incompatible and not registered."""
    dist = ep.dist
    record = PluginRecord(
        plugin_id=ep.name,
        distribution=dist.name if dist is not None else "?",
        version=dist.version if dist is not None else "?",
        entry_point=ep.value,
    )
    allow, block = _env_set(ALLOW_ENV), _env_set(BLOCK_ENV)
    if block is not None and (ep.name in block or record.distribution in block):
        record.status, record.error = "blocked", f"blocked by {BLOCK_ENV}"
        return record
    if allow is not None and ep.name not in allow and record.distribution not in allow:
        record.status, record.error = "blocked", f"not in {ALLOW_ENV}={','.join(sorted(allow))}"
        return record
    req = _tinyllava_requirement(dist)
    if req is not None and req.specifier and not req.specifier.contains(Version(__version__), prereleases=True):
        record.status = "incompatible"
        record.error = (
            f"requires tinyllava{req.specifier} but tinyllava {__version__} is installed; "
            f"upgrade the plugin or install a matching tinyllava"
        )
        return record
    try:
        module = ep.load()
    except Exception as exc:  # noqa: BLE001 - isolation is the point
        record.status = "failed"
        record.error = f"import failed: {type(exc).__name__}: {exc}"
        _debug_trace()
        return record
    declared = getattr(module, API_ATTRIBUTE, None)
    record.plugin_api = str(declared or "")
    problem = api_problem(declared)
    if problem is not None and declared is not None:
        record.status, record.error = "incompatible", problem
        return record
    if problem is not None:
        record.warnings.append(problem)
    record.module, record.status = module, "ok"
    return record


def api_problem(declared: Any) -> str | None:
    """Why a plugin declaring plugin API `declared` cannot (or may not) work with this tinyllava, else None.

    Same major and a minor no newer than ours: compatible. No declaration: usable, reported by `plugins check`.
    """
    from tinyllava.api import PLUGIN_API_VERSION

    if declared is None:
        return (f"declares no plugin API version; add {API_ATTRIBUTE} = {PLUGIN_API_VERSION!r} to its entry module "
                f"(see CONTRIBUTING.md, 'Versioning')")
    try:
        major, minor = (int(p) for p in str(declared).split("."))
        ours_major, ours_minor = (int(p) for p in PLUGIN_API_VERSION.split("."))
    except ValueError:
        return f"{API_ATTRIBUTE} = {declared!r} is not 'MAJOR.MINOR'"
    if major != ours_major:
        return (f"written for plugin API {declared}, but this tinyllava {__version__} provides plugin API "
                f"{PLUGIN_API_VERSION}; install a plugin release for API {ours_major}.x, or a tinyllava that "
                f"provides {major}.x")
    if minor > ours_minor:
        return (f"needs plugin API {declared}, newer than this tinyllava's {PLUGIN_API_VERSION}; "
                f"upgrade tinyllava (pip install -U tinyllava)")
    return None


def _debug_trace() -> None:
    if os.environ.get("TINYLLAVA_DEBUG_PLUGINS"):
        traceback.print_exc()
