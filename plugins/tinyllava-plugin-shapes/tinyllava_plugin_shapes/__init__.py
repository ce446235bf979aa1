"""Entry module of the shapes plugin: a synthetic dataset and its benchmark."""

from tinyllava.plugins import hookimpl


@hookimpl
def register_datasets() -> dict[str, str]:
    return {"shapes": "tinyllava_plugin_shapes.dataset:ShapesDataset"}


@hookimpl
def register_benchmarks() -> dict[str, str]:
    return {"shapes": "tinyllava_plugin_shapes.benchmark:ShapesBenchmark"}
