"""Cache of a frozen vision tower's selected features, one safetensors file per image.

A frozen tower maps the same image to the same features every epoch and every stage that keeps it
frozen. The cache folder is keyed by everything the features depend on besides the image: the
tower's weights, its component spec (feature layer, strategy, ...), the image preprocessing and the
image processor's settings, the tower's dtype and the compute dtype; each file inside is named by the
image file's content hash. The first epoch fills it (the tower runs for images not cached yet), later
epochs, later stages and restarted runs read it and skip both the tower and the image decoding.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

FORMAT_VERSION = 1


def tower_fingerprint(model: Any, image_processor: Any, image_preprocess: str, compute_dtype: str) -> str:
    """Hash of the tower's weights and of every setting between an image file and its features."""
    h = hashlib.sha256()
    tower = model.vision_tower
    for name, tensor in sorted(tower.state_dict().items()):
        h.update(name.encode())
        t = tensor.detach().cpu().contiguous()
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())  # the buffer itself: no copy of a large tower
    settings = {
        "format": FORMAT_VERSION,
        "tower_spec": model.config.components.get("vision_tower"),
        "image_preprocess": image_preprocess,
        "image_processor": image_processor.to_dict() if hasattr(image_processor, "to_dict") else repr(image_processor),
        "compute_dtype": compute_dtype,
        "feature_index": getattr(tower, "feature_index", None),
        "strategy": getattr(tower, "strategy", None),
    }
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


def tower_is_deterministic(model: Any) -> str | None:
    """None when the tower gives the same output for the same input in training mode, else why not (dropout)."""
    for name, module in model.vision_tower.named_modules():
        if isinstance(module, torch.nn.Dropout) and module.p > 0 and module.training:
            return f"the vision tower has dropout ({name or 'root'}, p={module.p})"
    config = getattr(model.vision_tower, "config", None)
    for attr in ("attention_dropout", "dropout", "hidden_dropout_prob", "attention_probs_dropout_prob"):
        value = getattr(config, attr, 0) or 0
        if isinstance(value, (int, float)) and value > 0 and model.vision_tower.training:
            return f"the vision tower's config sets {attr}={value}"
    return None


class FeatureCache:
    """`<root>/<tower fingerprint>/<digest[:2]>/<digest>.safetensors`, written atomically by whoever computes it."""

    def __init__(self, root: Path, fingerprint: str) -> None:
        self.folder = Path(root) / fingerprint
        self.hits = 0
        self.written = 0

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> torch.Tensor | None:
        path = self.path(key)
        if not path.is_file():
            return None
        from safetensors.torch import load_file

        try:
            features = load_file(str(path))["features"]
        except Exception:  # noqa: BLE001 - a damaged file is recomputed
            return None
        self.hits += 1
        return features

    def put(self, key: str, features: torch.Tensor) -> None:
        from safetensors.torch import save_file

        path = self.path(key)
        if path.is_file():
            return
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file({"features": features.detach().cpu().contiguous()}, str(tmp))
            os.replace(tmp, path)
        except OSError as exc:  # a cache is optional: a full disk skips it (the features were computed anyway)
            import logging

            logging.getLogger(__name__).warning("feature cache: could not write %s (%s); going on without it",
                                                path, exc.strerror or exc)
            tmp.unlink(missing_ok=True)
            return
        self.written += 1


class FeatureResolver:
    """Turns a collated batch's (image_keys, cached_features, pixel_values of the missing ones) into
    `image_features`: the tower runs only for the missing images, exactly as the model would run it
    (`vision_features`), and their features are written to the cache."""

    def __init__(self, cache: FeatureCache) -> None:
        self.cache = cache
        self.encoded = 0  # images the tower ran on

    def __call__(self, inputs: dict[str, Any], model: Any) -> dict[str, Any]:
        if "image_keys" not in inputs:
            return inputs
        inputs = dict(inputs)
        keys = inputs.pop("image_keys")
        cached = inputs.pop("cached_features")
        pixel_values = inputs.pop("pixel_values", None)
        fresh: list[torch.Tensor] = []
        if pixel_values is not None:
            with torch.no_grad():
                computed = model.vision_features(pixel_values)
            fresh = list(computed.unbind(0))
            self.encoded += len(fresh)
        features: list[torch.Tensor] = []
        it = iter(fresh)
        for key, feats in zip(keys, cached, strict=True):
            if feats is None:
                feats = next(it)
                self.cache.put(key, feats)
            features.append(feats)
        device = inputs["input_ids"].device
        inputs["image_features"] = torch.stack([f.to(device) for f in features])
        return inputs
