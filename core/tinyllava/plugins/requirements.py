"""What to install: the plugin distributions a checkpoint was saved with, and the exact `pip install` line.

A checkpoint's manifest records, for each component, the plugin id, distribution and version that provided
it. Loading resolves each one by its qualified name (`plugin:name`), so a third-party plugin registering the
same bare name never captures a saved model; whatever is missing, blocked, failed or incompatible is named
in one message with one `pip install` line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tinyllava.plugins.registry import ComponentConflictError, ComponentNotFoundError, split_qualified

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Missing:
    kind: str
    name: str
    distribution: str
    version: str
    why: str  # "not installed", or "installed 0.1.0 but blocked: ..."

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}" if self.version not in ("", "?") else self.distribution


def pip_line(requirements: list[str]) -> str:
    return "pip install " + " ".join(f'"{r}"' if "=" in r else r for r in dict.fromkeys(requirements))


def resolve_saved(plugins: dict[str, dict[str, str]], registry: Any) -> tuple[dict[str, str], list[Missing]]:
    """({"kind/name": name to create it with}, what cannot be resolved) for a manifest's `plugins` table."""
    records = {r.distribution: r for r in registry.plugins}
    resolved: dict[str, str] = {}
    missing: list[Missing] = []
    for key, info in plugins.items():
        kind, _, saved_name = key.partition("/")
        _, bare = split_qualified(saved_name)
        dist, version = info.get("distribution", "?"), info.get("version", "?")
        qualified = f"{dist}:{bare}" if dist not in ("", "?") else saved_name
        try:
            entry = registry.entry(kind, qualified)
        except (ComponentNotFoundError, ComponentConflictError):
            record = records.get(dist)
            if record is None:
                why = "not installed"
            elif record.status != "ok":
                why = f"installed ({record.version}) but {record.status}: {record.error}"
            else:
                why = f"installed ({record.version}) but it no longer provides {kind} {bare!r}"
            missing.append(Missing(kind, bare, dist, version, why))
            continue
        resolved[key] = entry.qualified if (kind, bare) in registry.conflicts else saved_name
        if entry.version != version:
            log.warning("%s %r was saved with %s %s; %s is installed", kind, bare, dist, version, entry.version)
    return resolved, missing


def missing_message(missing: list[Missing]) -> str:
    """One message for everything a checkpoint needs and lacks, ending with the install line."""
    parts = [f"{m.kind} {m.name!r} from {m.distribution} {m.version} ({m.why})" for m in missing]
    blocked = [m for m in missing if "blocked" in m.why]
    hint = (f"; unblock {', '.join(m.distribution for m in blocked)} (TINYLLAVA_PLUGINS_BLOCK / "
            f"TINYLLAVA_PLUGINS_ALLOW)" if blocked else "")
    return (f"this checkpoint needs {'; '.join(parts)}. Install what it was saved with: "
            f"{pip_line([m.requirement for m in missing])}{hint}")
