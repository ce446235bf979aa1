"""QLoRA: stage 1 `pretrain` trains the connector (lr 1e-3); stage 2 `finetune` quantises the LLM's Linear
layers with bitsandbytes (4-bit NF4 with double quantisation by default, or 8-bit) and trains LoRA adapters
on top (r 128, alpha 256) next to the fully trained connector (lr 2e-4).

The finetune stage is saved as the base weights the quantised model computed with (dequantised, float32)
plus a PEFT adapter in `adapters/llm/`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from tinyllava.components.base import ComponentOptions
from tinyllava.components.recipe import Recipe


class QLoraOptions(ComponentOptions):
    pretrain_data: dict[str, Any] | None = Field(None, description="stage-1 data (caption data), as a stage `data`")
    finetune_data: dict[str, Any] | None = Field(None, description="stage-2 data (instructions), as a stage `data`")
    bits: Literal[4, 8] = Field(4, description="4: NF4 QLoRA; 8: LLM.int8 (the original's qlora_int8)")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type")
    double_quant: bool = Field(True, description="also quantise the 4-bit block scales")
    r: int = Field(128, ge=1, description="LoRA rank of the finetune stage")
    alpha: float = Field(256.0, gt=0, description="LoRA alpha of the finetune stage")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout of the finetune stage")


class QLoraRecipe(Recipe):
    Options: ClassVar[type[ComponentOptions]] = QLoraOptions
    tune_modes: ClassVar[tuple[str, ...]] = ("frozen", "full", "partial", "lora", "qlora")

    def default_stages(self) -> list[dict[str, Any]]:
        opts: QLoraOptions = self.options  # type: ignore[assignment]
        common = {"recipe": {"name": "qlora"}, "epochs": 1, "warmup_ratio": 0.03, "scheduler": "cosine"}
        pretrain: dict[str, Any] = {
            **common, "name": "pretrain", "chat_template": {"name": "pretrain"},
            "tune": {"llm": "frozen", "vision_tower": "frozen", "connector": "full"},
            "lr": 1e-3, "batch_size": 32, "grad_accum": 8, "save_steps": 24000,
        }
        llm = {
            "mode": "qlora",
            "lora": {"r": opts.r, "alpha": opts.alpha, "dropout": opts.dropout},
            "quant": {"bits": opts.bits, "quant_type": opts.quant_type, "double_quant": opts.double_quant},
        }
        finetune: dict[str, Any] = {
            **common, "name": "finetune",
            "tune": {"llm": llm, "vision_tower": "frozen", "connector": "full"},
            "lr": 2e-4, "batch_size": 8, "grad_accum": 16, "save_steps": 5000, "save_format": "adapters",
        }
        if opts.pretrain_data is not None:
            pretrain["data"] = opts.pretrain_data
        if opts.finetune_data is not None:
            finetune["data"] = opts.finetune_data
        return [pretrain, finetune]
