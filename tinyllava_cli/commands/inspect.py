"""`tinyllava plugins list` and `tinyllava components`."""

from __future__ import annotations

import json
import sys

from rich.table import Table

from tinyllava_cli.commands.common import console, fail


def plugins_list(check: bool, as_json: bool) -> int:
    from tinyllava.plugins.registry import get_registry

    registry = get_registry()
    records = [r.as_dict() for r in registry.plugins]
    if not check:
        for r in records:
            r.pop("components")
    if as_json:
        print(json.dumps({"python": sys.executable, "plugins": records}, indent=2))
        return 0
    table = Table(title=f"tinyllava plugins (python: {sys.executable})")
    for col in ("plugin", "distribution", "version", "status", "error"):
        table.add_column(col, overflow="fold")
    if check:
        table.add_column("components", overflow="fold")
    for r in records:
        status = r["status"]
        style = "green" if status == "ok" else "red"
        note = "; ".join([r["error"], *r["warnings"]] if r["error"] else r["warnings"])
        if r["warnings"] and status == "ok":
            style = "yellow"
        row = [r["plugin"], r["distribution"], r["version"], f"[{style}]{status}[/]", note]
        if check:
            row.append("; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(r["components"].items())))
        table.add_row(*row)
    console.print(table)
    if not records:
        console.print("no plugins found in this interpreter: install the ones your specs name, e.g. "
                      "pip install tinyllava-plugin-llama tinyllava-plugin-clip tinyllava-plugin-mlp "
                      "(README, 'Plugins'); tinyllava train names the ones a spec needs", highlight=False)
    return 0


def components_list(kind: str | None, as_json: bool) -> int:
    from tinyllava.components.base import KINDS
    from tinyllava.plugins.registry import get_registry

    if kind is not None and kind not in KINDS:
        return fail(f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}")
    registry = get_registry()
    entries = registry.all_entries()
    if kind:
        entries = [e for e in entries if e.kind == kind]
    rows = [
        {"kind": e.kind, "name": e.name, "qualified": e.qualified, "shared": (e.kind, e.name) in registry.conflicts,
         "plugin": e.plugin_id, "distribution": e.distribution, "version": e.version, "reference": e.reference}
        for e in entries
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="tinyllava components")
    for col in ("kind", "name", "plugin", "version", "reference"):
        table.add_column(col)
    for r in rows:
        name = f"{r['name']} [yellow](shared: use {r['qualified']})[/]" if r["shared"] else r["name"]
        table.add_row(r["kind"], name, r["plugin"], r["version"], r["reference"])
    console.print(table)
    return 0
