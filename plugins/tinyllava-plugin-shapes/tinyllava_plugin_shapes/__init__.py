"""Entry module of the shapes plugin: a synthetic dataset and its benchmark."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_datasets() -> dict[str, str]:
    return {"shapes": "tinyllava_plugin_shapes.dataset:ShapesDataset"}


@hookimpl
def register_benchmarks() -> dict[str, str]:
    return {"shapes": "tinyllava_plugin_shapes.benchmark:ShapesBenchmark"}
