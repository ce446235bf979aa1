"""Entry module of the scienceqa benchmark plugin: registration only, nothing heavy imported."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_benchmarks() -> dict[str, str]:
    return {"scienceqa": "tinyllava_plugin_scienceqa.scienceqa:ScienceQABenchmark"}
