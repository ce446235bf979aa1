"""Entry module of the mmmu benchmark plugin: registration only, nothing heavy imported."""

from tinyllava.plugins import hookimpl


@hookimpl
def register_benchmarks() -> dict[str, str]:
    return {"mmmu": "tinyllava_plugin_mmmu.mmmu:MMMUBenchmark"}
