"""Entry module of the mmmu benchmark plugin: registration only, nothing heavy imported."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_benchmarks() -> dict[str, str]:
    return {"mmmu": "tinyllava_plugin_mmmu.mmmu:MMMUBenchmark"}
