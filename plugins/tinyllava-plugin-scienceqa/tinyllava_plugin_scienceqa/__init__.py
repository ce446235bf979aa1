"""Entry module of the scienceqa benchmark plugin: registration only, nothing heavy imported."""

from tinyllava.plugins import hookimpl


@hookimpl
def register_benchmarks() -> dict[str, str]:
    return {"scienceqa": "tinyllava_plugin_scienceqa.scienceqa:ScienceQABenchmark"}
