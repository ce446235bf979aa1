"""The fast image path gives the processor's own pixels, bit for bit, and steps aside whenever it cannot."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tinyllava.data import fast_pixels as fp
from tinyllava.data.images import preprocess_image


def _processor(name: str, **options):
    import transformers

    return getattr(transformers, name + "Pil")(**options)


PROCESSORS = {
    "clip-224": ("CLIPImageProcessor", {}),
    "clip-336": ("CLIPImageProcessor", {"size": {"shortest_edge": 336}, "crop_size": {"height": 336, "width": 336}}),
    "siglip": ("SiglipImageProcessor", {}),
    "dinov2-like": ("BitImageProcessor", {"size": {"shortest_edge": 256}, "crop_size": {"height": 224, "width": 224},
                                          "do_center_crop": True, "resample": 3}),
    "no-normalise": ("CLIPImageProcessor", {"do_normalize": False}),
    "no-rescale": ("CLIPImageProcessor", {"do_rescale": False}),
}


def _image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), mode="RGB")


@pytest.mark.parametrize("kind", sorted(PROCESSORS))
@pytest.mark.parametrize("mode", ["square", "pad"])
def test_the_fast_path_gives_the_processors_pixels_exactly(kind, mode):
    name, options = PROCESSORS[kind]
    processor = _processor(name, **options)
    assert fp.fast_pixels(processor) is not None
    for seed, (w, h) in enumerate([(640, 480), (33, 250), (224, 224), (1000, 120), (17, 19)]):
        image = _image(w, h, seed)
        ours = preprocess_image(image, processor, mode)
        square = image
        if mode == "pad":
            from tinyllava.data.images import expand_to_square

            square = expand_to_square(image, tuple(int(m * 255) for m in (processor.image_mean or [0.5] * 3)))
        theirs = processor(images=square, return_tensors="pt")["pixel_values"][0]
        assert ours.dtype == torch.float32 and ours.shape == theirs.shape, (kind, w, h)
        assert torch.equal(ours, theirs), (kind, w, h)


def test_the_processor_is_not_called_once_the_fast_path_is_checked(monkeypatch):
    processor = _processor("CLIPImageProcessor")
    assert fp.fast_pixels(processor) is not None
    calls = []
    monkeypatch.setattr(type(processor), "__call__", lambda self, *a, **k: calls.append(1))
    preprocess_image(_image(300, 200, 1), processor, "square")
    assert calls == []


def test_a_processor_that_needs_padding_for_a_crop_goes_through_the_processor():
    processor = _processor("BitImageProcessor", size={"shortest_edge": 200},
                           crop_size={"height": 256, "width": 256}, do_center_crop=True)
    image = _image(300, 210, 2)
    theirs = processor(images=image, return_tensors="pt")["pixel_values"][0]
    assert torch.equal(preprocess_image(image, processor, "square"), theirs)


def test_a_processor_with_its_own_steps_gets_no_fast_path():
    import transformers

    class Flipping(transformers.CLIPImageProcessorPil):
        def normalize(self, image, mean, std, **kwargs):
            return super().normalize(image, mean, std, **kwargs)[:, ::-1].copy()

    processor = Flipping()
    assert fp.fast_pixels(processor) is None
    image = _image(250, 260, 3)
    assert torch.equal(preprocess_image(image, processor, "square"),
                       processor(images=image, return_tensors="pt")["pixel_values"][0])
    assert fp.fast_pixels(_processor("CLIPImageProcessor", do_pad=True)) is None


def test_a_fast_path_that_disagrees_on_the_probes_is_never_used(monkeypatch):
    real = fp._build

    def off_by_a_bit(processor):
        fn = real(processor)
        return lambda image: fn(image) + 1e-6

    monkeypatch.setattr(fp, "_build", off_by_a_bit)
    assert fp.fast_pixels(_processor("CLIPImageProcessor")) is None
