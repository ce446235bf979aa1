"""Contract for training recipes: default stages, and which parameters train in a stage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from tinyllava.components.base import Component

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from tinyllava.spec.runspec import StageSpec


class Recipe(Component):
    kind: ClassVar[str] = "recipe"
    tune_modes: ClassVar[tuple[str, ...]] = ("frozen", "full")

    def default_stages(self) -> list[dict[str, Any]]:
        """Stages (raw dicts, as in YAML) used when a spec names this recipe and lists no stages."""
        return []

    def prepare(self, model: nn.Module, stage: StageSpec) -> list[dict[str, Any]]:
        """Set requires_grad for the stage and return optimizer parameter groups."""
        from tinyllava.training.parameters import apply_tuning

        return apply_tuning(model, stage, allowed_modes=self.tune_modes)
