"""The paper's LoRA recipe: stage 1 `pretrain` trains the connector (lr 1e-3); stage 2 `finetune` trains
LoRA adapters on the frozen LLM (r 128, alpha 256 by default) next to the fully trained connector (lr 2e-4).

The finetune stage is saved as base weights plus a PEFT adapter (`adapters/llm/`);
`tinyllava merge` folds it in. LoRA on the vision tower is a `tune.vision_tower` away.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from tinyllava.components.base import ComponentOptions
from tinyllava.components.recipe import Recipe


class LoraOptions(ComponentOptions):
    pretrain_data: dict[str, Any] | None = Field(None, description="stage-1 data (caption data), as a stage `data`")
    finetune_data: dict[str, Any] | None = Field(None, description="stage-2 data (instructions), as a stage `data`")
    r: int = Field(128, ge=1, description="LoRA rank of the finetune stage")
    alpha: float = Field(256.0, gt=0, description="LoRA alpha of the finetune stage")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout of the finetune stage")


class LoraRecipe(Recipe):
    Options: ClassVar[type[ComponentOptions]] = LoraOptions
    tune_modes: ClassVar[tuple[str, ...]] = ("frozen", "full", "partial", "lora")

    def default_stages(self) -> list[dict[str, Any]]:
        opts: LoraOptions = self.options  # type: ignore[assignment]
        common = {"recipe": {"name": "lora"}, "epochs": 1, "warmup_ratio": 0.03, "scheduler": "cosine"}
        pretrain: dict[str, Any] = {
            **common, "name": "pretrain", "chat_template": {"name": "pretrain"},
            "tune": {"llm": "frozen", "vision_tower": "frozen", "connector": "full"},
            "lr": 1e-3, "batch_size": 32, "grad_accum": 8, "save_steps": 24000,
        }
        lora = {"r": opts.r, "alpha": opts.alpha, "dropout": opts.dropout}
        finetune: dict[str, Any] = {
            **common, "name": "finetune",
            "tune": {"llm": {"mode": "lora", "lora": lora}, "vision_tower": "frozen", "connector": "full"},
            "lr": 2e-4, "batch_size": 8, "grad_accum": 16, "save_steps": 5000, "save_format": "adapters",
        }
        if opts.pretrain_data is not None:
            pretrain["data"] = opts.pretrain_data
        if opts.finetune_data is not None:
            finetune["data"] = opts.finetune_data
        return [pretrain, finetune]
