"""JSON schema of RunSpec with every installed component's options in place of the generic slots."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import create_model

from tinyllava.spec.runspec import COMPONENT_KIND_KEY, RunSpec


def component_variants(registry: Any, kind: str,
                       skipped: list[tuple[str, str, str]] | None = None) -> dict[str, dict[str, Any]]:
    """name -> schema of `{name: <const>, **Options}` for each loadable component of a kind; the components
    that could not be included are appended to `skipped` as (kind, name, why)."""
    variants: dict[str, dict[str, Any]] = {}
    for name in registry.names(kind):
        try:
            cls = registry.component_class(kind, name)
            model = create_model(
                f"{kind}__{name}".replace("-", "_").replace(":", "__"),
                __base__=cls.Options,
                name=(Literal[name], ...),  # type: ignore[valid-type]
            )
            variants[name] = model.model_json_schema()
        except Exception as exc:  # noqa: BLE001 - reported to the caller, never dropped silently
            if skipped is not None:
                skipped.append((kind, name, f"{type(exc).__name__}: {exc}"))
    return variants


def run_spec_schema(registry: Any = None, skipped: list[tuple[str, str, str]] | None = None) -> dict[str, Any]:
    """The schema; components that could not be included are appended to `skipped` as (kind, name, why)."""
    from tinyllava.plugins.registry import get_registry

    registry = registry or get_registry()
    schema = RunSpec.model_json_schema()
    defs = schema.setdefault("$defs", {})
    cache: dict[str, list[dict[str, Any]]] = {}

    def refs_for(kind: str) -> list[dict[str, Any]]:
        if kind not in cache:
            refs = []
            for name, variant in component_variants(registry, kind, skipped).items():
                key = f"{kind}.{name}"
                for sub_name, sub in variant.pop("$defs", {}).items():
                    defs.setdefault(sub_name, sub)
                defs[key] = variant
                refs.append({"$ref": f"#/$defs/{key}"})
            cache[kind] = refs
        return cache[kind]

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            kind = node.get(COMPONENT_KIND_KEY)
            if kind is not None:
                refs = refs_for(kind)
                replaced = {k: v for k, v in node.items() if k not in ("$ref", "anyOf", COMPONENT_KIND_KEY)}
                options: list[dict[str, Any]] = list(refs) or [{"$ref": "#/$defs/ComponentSpec"}]
                if "anyOf" in node and any(o.get("type") == "null" for o in node["anyOf"]):
                    options.append({"type": "null"})
                replaced["anyOf"] = options
                replaced[COMPONENT_KIND_KEY] = kind
                return replaced
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    from tinyllava.components.base import KINDS

    for kind in KINDS:  # fill $defs before walking it
        refs_for(kind)
    walked = walk({k: v for k, v in schema.items() if k != "$defs"})
    walked["$defs"] = {k: walk(v) for k, v in list(defs.items())}
    return walked
