"""The paper's base recipe: stage 1 `pretrain` trains only the connector (lr 1e-3) on captions with the
`pretrain` template; stage 2 `finetune` trains connector + LLM (lr 2e-5). The vision tower stays frozen.

Any stage may still set its own `tune` (frozen / full per component) and learning rates.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from tinyllava.components.base import ComponentOptions
from tinyllava.components.recipe import Recipe


class BaseOptions(ComponentOptions):
    pretrain_data: dict[str, Any] | None = Field(None, description="stage-1 data (caption data), as a stage `data`")
    finetune_data: dict[str, Any] | None = Field(None, description="stage-2 data (instructions), as a stage `data`")


class BaseRecipe(Recipe):
    Options: ClassVar[type[ComponentOptions]] = BaseOptions

    def default_stages(self) -> list[dict[str, Any]]:
        opts: BaseOptions = self.options  # type: ignore[assignment]
        pretrain: dict[str, Any] = {
            "name": "pretrain",
            "recipe": {"name": "base"},
            "chat_template": {"name": "pretrain"},
            "tune": {"llm": "frozen", "vision_tower": "frozen", "connector": "full"},
            "lr": 1e-3,
            "batch_size": 32,
            "grad_accum": 8,
            "epochs": 1,
            "warmup_ratio": 0.03,
            "scheduler": "cosine",
            "save_steps": 24000,
        }
        finetune: dict[str, Any] = {
            "name": "finetune",
            "recipe": {"name": "base"},
            "tune": {"llm": "full", "vision_tower": "frozen", "connector": "full"},
            "lr": 2e-5,
            "batch_size": 8,
            "grad_accum": 16,
            "epochs": 1,
            "warmup_ratio": 0.03,
            "scheduler": "cosine",
            "save_steps": 5000,
        }
        if opts.pretrain_data is not None:
            pretrain["data"] = opts.pretrain_data
        if opts.finetune_data is not None:
            finetune["data"] = opts.finetune_data
        return [pretrain, finetune]
