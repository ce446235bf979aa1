"""The paper's custom finetune: start from a trained tinyllava checkpoint (the spec's `init_from`) and
LoRA-finetune it on your own LLaVA-format data: LLM adapters r 128 / alpha 256, connector trained fully,
vision tower frozen, lr 1e-4, global batch 128.

The checkpoint may itself hold adapters (they are merged first), so finetunes stack.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from tinyllava.components.base import ComponentOptions
from tinyllava.components.recipe import Recipe


class CustomFinetuneOptions(ComponentOptions):
    data: dict[str, Any] | None = Field(
        None, description="your data, as a stage `data` (default: the run's `data`)"
    )
    r: int = Field(128, ge=1, description="LoRA rank")
    alpha: float = Field(256.0, gt=0, description="LoRA alpha")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout")
    qlora: bool = Field(False, description="quantise the LLM to 4-bit NF4 first (QLoRA) to fit a small GPU")


class CustomFinetuneRecipe(Recipe):
    Options: ClassVar[type[ComponentOptions]] = CustomFinetuneOptions
    tune_modes: ClassVar[tuple[str, ...]] = ("frozen", "full", "partial", "lora", "qlora")
    needs_init_from: ClassVar[bool] = True

    def default_stages(self) -> list[dict[str, Any]]:
        opts: CustomFinetuneOptions = self.options  # type: ignore[assignment]
        llm: dict[str, Any] = {
            "mode": "qlora" if opts.qlora else "lora",
            "lora": {"r": opts.r, "alpha": opts.alpha, "dropout": opts.dropout},
        }
        stage: dict[str, Any] = {
            "name": "custom_finetune",
            "recipe": {"name": "custom_finetune"},
            "tune": {"llm": llm, "vision_tower": "frozen", "connector": "full"},
            "lr": 1e-4,
            "batch_size": 4,
            "grad_accum": 32,
            "epochs": 1,
            "warmup_ratio": 0.03,
            "scheduler": "cosine",
            "save_steps": 500,
            "save_format": "adapters",
        }
        if opts.data is not None:
            stage["data"] = opts.data
        return [stage]
