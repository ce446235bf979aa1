"""Entry module of the vqa benchmark plugin: registration only, nothing heavy imported."""

from tinyllava.plugins import hookimpl


@hookimpl
def register_benchmarks() -> dict[str, str]:
    return {
        "vqav2": "tinyllava_plugin_vqa.vqav2:VQAv2Benchmark",
        "gqa": "tinyllava_plugin_vqa.gqa:GQABenchmark",
        "textvqa": "tinyllava_plugin_vqa.textvqa:TextVQABenchmark",
    }
