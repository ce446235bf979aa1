"""Entry module of the mme benchmark plugin: registration only, nothing heavy imported."""

from tinyllava.plugins import hookimpl


@hookimpl
def register_benchmarks() -> dict[str, str]:
    return {"mme": "tinyllava_plugin_mme.mme:MMEBenchmark"}
