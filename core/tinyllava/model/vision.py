"""A wrapper that turns a transformers vision model into a (B, N, D) feature encoder.

It keeps only the layers the selected feature needs, so no parameter is built into the module
that never receives a gradient (DDP needs no find_unused_parameters).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _get_attr(root: nn.Module, path: str) -> Any:
    obj: Any = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _set_attr(root: nn.Module, path: str, value: Any) -> None:
    parent_path, _, last = path.rpartition(".")
    parent = _get_attr(root, parent_path) if parent_path else root
    setattr(parent, last, value)


class HFVisionEncoder(nn.Module):
    """Runs a transformers vision model and returns the selected hidden states."""

    def __init__(
        self,
        model: nn.Module,
        *,
        layers_path: str,
        feature_layer: int,
        strategy: str,
        has_cls: bool,
        num_patches: int,
        final_norm_path: str | None = None,
        apply_final_norm: bool = False,
        drop_first_patch: bool = False,
    ) -> None:
        super().__init__()
        layers = _get_attr(model, layers_path)
        total = len(layers)
        index = feature_layer if feature_layer >= 0 else total + 1 + feature_layer
        if not 0 <= index <= total:
            raise ValueError(f"feature_layer {feature_layer} is out of range for a tower with {total} layers")
        if index < total:  # drop layers whose output is never used
            _set_attr(model, layers_path, nn.ModuleList(list(layers)[:index]))
        self.model = model
        self.layers_path = layers_path  # where the (kept) layers live, for importers and exporters
        self.feature_index = index
        # with no layer left, transformers records no hidden state: catch the encoder's input instead
        self._encoder_input: torch.Tensor | None = None
        if index == 0:
            encoder = _get_attr(model, layers_path.rpartition(".")[0]) if "." in layers_path else model
            encoder.register_forward_pre_hook(self._record_encoder_input, with_kwargs=True)
        self.strategy = strategy
        self.has_cls = has_cls
        self.drop_first_patch = drop_first_patch
        # a path, not a module attribute: an alias would save the norm weights twice
        self.final_norm_path = final_norm_path if apply_final_norm else None
        self.hidden_size = int(model.config.hidden_size)
        tokens = num_patches + (1 if has_cls else 0)
        if strategy == "patch" and (has_cls or drop_first_patch):
            tokens -= 1
        self.num_tokens = tokens

    def _record_encoder_input(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor) and a.dim() == 3]
        self._encoder_input = tensors[0] if tensors else None

    @property
    def config(self) -> Any:
        return self.model.config

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        dtype = next(self.model.parameters()).dtype
        out = self.model(pixel_values=pixel_values.to(dtype), output_hidden_states=True)
        if self.feature_index == 0:
            feats, self._encoder_input = self._encoder_input, None
            if feats is None:
                raise RuntimeError("feature_layer 0: the tower's encoder was not called with the embeddings")
        else:
            feats = out.hidden_states[self.feature_index]
        if self.final_norm_path:
            feats = _get_attr(self.model, self.final_norm_path)(feats)
        if self.strategy == "patch" and (self.has_cls or self.drop_first_patch):
            feats = feats[:, 1:]
        return feats
