"""Tiny random components (through the in-repo plugins) that build and train in about a second."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

TINY_MODEL: dict[str, Any] = {
    "llm": {
        "name": "llama",
        "config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                   "num_key_value_heads": 2, "max_position_embeddings": 256, "tie_word_embeddings": True},
        "tokenizer_vocab_size": 320,
        "tokenizer_corpus": ["red", "circle", "square", "What shape is the"],
    },
    "vision_tower": {
        "name": "clip",
        "config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                   "image_size": 32, "patch_size": 8},
        "image_mean": [0.0, 0.0, 0.0],
        "image_std": [0.5, 0.5, 0.5],
    },
    "connector": {"name": "mlp", "depth": 2},
    "chat_template": {"name": "llama"},
    "max_length": 128,
}


def tiny_run_spec(output_dir: Path, *, name: str = "tiny", steps: int = 2, num_images: int = 16,
                  save_steps: int = 100) -> dict[str, Any]:
    """A raw two-stage spec on the shapes data, small enough for unit tests."""
    def stage(stage_name: str, split: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": stage_name, "recipe": "base",
            "data": {"dataset": {"name": "shapes", "split": split, "num_images": num_images, "image_size": 32}},
            "tune": {"llm": "full", "vision_tower": "frozen", "connector": "full"},
            "lr": 1e-3, "batch_size": 4, "max_steps": steps, "logging_steps": 1, "save_steps": save_steps,
            **extra,
        }

    return {
        "name": name,
        "output_dir": str(output_dir),
        "num_threads": 1,
        "model": copy.deepcopy(TINY_MODEL),
        "stages": [stage("align", "captions", chat_template="pretrain"), stage("instruct", "instruct")],
    }


def save_and_reload_tiny(folder: Path, **components: Any) -> tuple[Any, Any]:
    """Build TINY_MODEL with some `components` replaced (e.g. vision_tower={...}), save it as a checkpoint in
    `folder` and load it back offline: the (built, loaded) pair, for checks that a component survives the core's
    checkpoint round trip."""
    import torch

    from tinyllava.checkpoint.load import load_checkpoint
    from tinyllava.checkpoint.save import save_checkpoint
    from tinyllava.model.build import build_fresh
    from tinyllava.plugins.registry import get_registry
    from tinyllava.spec.runspec import ModelSpec

    torch.manual_seed(0)
    built = build_fresh(get_registry(), ModelSpec.model_validate({**copy.deepcopy(TINY_MODEL), **components}))
    save_checkpoint(folder, built.model, built.tokenizer, built.image_processor,
                    chat_template={"name": "llama", "options": {}})
    return built, load_checkpoint(folder)
