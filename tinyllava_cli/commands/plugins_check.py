"""`tinyllava plugins check [NAME...] [--traceback]`: everything that can go wrong with a plugin, before a run.

For each selected plugin (all by default; NAME is a plugin id or a distribution): it loaded and is compatible,
declares the plugin API, shares no bare name with another plugin, and each of its components imports,
honours its kind's contract (abstract methods, Options from ComponentOptions), has Options defaults that
validate, and takes its place in the run-spec schema. Exit status 1 when anything failed, else 0.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table

from tinyllava_cli.commands.common import console, err_console, fail


@dataclass
class PluginReport:
    plugin: str
    distribution: str
    version: str
    status: str
    components: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _format(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _import_trace(entry_point: str) -> str:
    """The traceback of importing a failed plugin's entry module again (only for --traceback)."""
    import importlib

    try:
        importlib.import_module(entry_point.partition(":")[0])
    except Exception as exc:  # noqa: BLE001
        return _format(exc)
    return ""


def check_plugin(registry: Any, record: Any, schema_skipped: dict[tuple[str, str], str],
                 with_traceback: bool) -> PluginReport:
    from tinyllava.plugins.contracts import default_problems

    report = PluginReport(record.plugin_id, record.distribution, record.version, record.status)
    if record.status == "blocked":
        return report  # not loaded on purpose: nothing to check
    if record.status != "ok":
        report.problems.append(f"{record.status}: {record.error}")
        if with_traceback and record.status == "failed":
            report.tracebacks.append(_import_trace(record.entry_point))
        return report
    report.problems.extend(record.warnings)
    for kind, names in sorted(record.components.items()):
        for name in names:
            qualified = f"{record.plugin_id}:{name}"
            report.components.append(f"{kind}:{name}")
            try:
                cls = registry.component_class(kind, qualified)
            except Exception as exc:  # noqa: BLE001 - a report, not a crash
                report.problems.append(f"{kind} {name!r}: {type(exc).__name__}: {exc}")
                if with_traceback:
                    report.tracebacks.append(_format(exc))
                continue
            report.problems.extend(f"{kind} {name!r}: {p}" for p in default_problems(cls.Options))
            shown = qualified if (kind, name) in registry.conflicts else name
            if (kind, shown) in schema_skipped:
                report.problems.append(f"{kind} {name!r}: not in the run-spec schema: {schema_skipped[(kind, shown)]}")
    return report


def plugins_check(names: list[str], with_traceback: bool, as_json: bool) -> int:
    from tinyllava.plugins.registry import get_registry
    from tinyllava.spec.schema import run_spec_schema

    registry = get_registry()
    records = registry.plugins
    if names:
        known = {r.plugin_id for r in records} | {r.distribution for r in records}
        unknown = [n for n in names if n not in known]
        if unknown:
            listed = ", ".join(sorted(r.plugin_id for r in records)) or "none"
            return fail(f"no installed plugin {', '.join(map(repr, unknown))} (give a plugin id or a distribution); "
                        f"installed: {listed}")
        records = [r for r in records if r.plugin_id in names or r.distribution in names]
    skipped: list[tuple[str, str, str]] = []
    run_spec_schema(registry, skipped=skipped)
    schema_skipped = {(kind, name): why for kind, name, why in skipped}
    reports = [check_plugin(registry, r, schema_skipped, with_traceback) for r in records]
    failed = [r for r in reports if not r.ok]
    if as_json:
        print(json.dumps({"ok": not failed, "plugins": [{**r.__dict__, "ok": r.ok} for r in reports]}, indent=2))
        return 1 if failed else 0
    table = Table(title="tinyllava plugins check")
    for col in ("plugin", "distribution", "version", "components", "result"):
        table.add_column(col, overflow="fold")
    for r in reports:
        if r.status == "blocked":
            result = "[dim]blocked: not checked[/]"
        else:
            result = "[green]ok[/]" if r.ok else "[red]" + "\n".join(r.problems) + "[/]"
        table.add_row(r.plugin, r.distribution, r.version, str(len(r.components)), result)
    console.print(table)
    if with_traceback:
        for r in reports:
            for trace in r.tracebacks:
                err_console.print(f"[bold]{r.plugin}[/]:", highlight=False)
                err_console.print(trace, highlight=False, markup=False)
    if not reports:
        console.print("no plugins found: install some (see README, 'Plugins') into this interpreter")
    if failed:
        hint = "" if with_traceback else "; add --traceback for the full errors"
        err_console.print(f"[bold red]{len(failed)} of {len(reports)} plugins have problems[/]{hint}", highlight=False)
        return 1
    console.print(f"all {len(reports)} plugins ok")
    return 0
