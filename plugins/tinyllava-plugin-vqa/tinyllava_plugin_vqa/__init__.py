"""Entry module of the vqa benchmark plugin: registration only, nothing heavy imported."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_benchmarks() -> dict[str, str]:
    return {
        "vqav2": "tinyllava_plugin_vqa.vqav2:VQAv2Benchmark",
        "gqa": "tinyllava_plugin_vqa.gqa:GQABenchmark",
        "textvqa": "tinyllava_plugin_vqa.textvqa:TextVQABenchmark",
    }
