"""The TinyLLaVA paper's share recipe (ShareGPT4V data), three stages:

1. `pretrain`: the connector alone learns to align (LLaVA-558K captions, `pretrain` template, lr 1e-3).
2. `share_pretrain`: caption pretraining with the LLM unfrozen (ShareGPT4V 1.2M captions, lr 2e-5);
   the vision tower stays frozen, or trains from a block on (`vision_from_layer`, the paper's variant).
3. `finetune`: instruction tuning of LLM + connector (lr 2e-5).

Each stage starts from the previous one's checkpoint; any field stays overridable per stage.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from tinyllava.components.base import ComponentOptions
from tinyllava.components.recipe import Recipe


class ShareOptions(ComponentOptions):
    pretrain_data: dict[str, Any] | None = Field(None, description="stage-1 data (e.g. LLaVA-558K), as a stage `data`")
    share_pretrain_data: dict[str, Any] | None = Field(
        None, description="stage-2 caption data (e.g. ShareGPT4V share-captioner 1.2M), as a stage `data`"
    )
    finetune_data: dict[str, Any] | None = Field(
        None, description="stage-3 instruction data (e.g. ShareGPT4V mix665k), as a stage `data`"
    )
    vision_from_layer: int | None = Field(
        None, description="stage 2 also trains the vision tower from this block on (the paper used 12); "
        "default: the tower stays frozen"
    )


class ShareRecipe(Recipe):
    Options: ClassVar[type[ComponentOptions]] = ShareOptions
    tune_modes: ClassVar[tuple[str, ...]] = ("frozen", "full", "partial")

    def default_stages(self) -> list[dict[str, Any]]:
        opts: ShareOptions = self.options  # type: ignore[assignment]
        common = {"recipe": {"name": "share"}, "epochs": 1, "warmup_ratio": 0.03, "scheduler": "cosine"}
        pretrain: dict[str, Any] = {
            **common, "name": "pretrain", "chat_template": {"name": "pretrain"},
            "tune": {"llm": "frozen", "vision_tower": "frozen", "connector": "full"},
            "lr": 1e-3, "batch_size": 32, "grad_accum": 8, "save_steps": 24000,
        }
        vision: Any = "frozen"
        if opts.vision_from_layer is not None:
            vision = {"mode": "partial", "from_layer": opts.vision_from_layer}
        share_pretrain: dict[str, Any] = {
            **common, "name": "share_pretrain", "chat_template": {"name": "pretrain"},
            "tune": {"llm": "full", "vision_tower": vision, "connector": "full"},
            "lr": 2e-5, "batch_size": 8, "grad_accum": 32, "save_steps": 5000,
        }
        finetune: dict[str, Any] = {
            **common, "name": "finetune",
            "tune": {"llm": "full", "vision_tower": "frozen", "connector": "full"},
            "lr": 2e-5, "batch_size": 8, "grad_accum": 16, "save_steps": 5000,
        }
        for stage, data in ((pretrain, opts.pretrain_data), (share_pretrain, opts.share_pretrain_data),
                            (finetune, opts.finetune_data)):
            if data is not None:
                stage["data"] = data
        return [pretrain, share_pretrain, finetune]
