"""Entry module of the pope benchmark plugin: registration only, nothing heavy imported."""

from tinyllava.plugins import hookimpl


@hookimpl
def register_benchmarks() -> dict[str, str]:
    return {"pope": "tinyllava_plugin_pope.pope:POPEBenchmark"}
