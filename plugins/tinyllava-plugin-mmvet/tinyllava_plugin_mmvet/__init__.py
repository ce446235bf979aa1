"""Entry module of the mmvet benchmark plugin: registration only, nothing heavy imported."""

from tinyllava.plugins import hookimpl


@hookimpl
def register_benchmarks() -> dict[str, str]:
    return {"mmvet": "tinyllava_plugin_mmvet.mmvet:MMVetBenchmark"}
