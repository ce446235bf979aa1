"""Contract for training recipes: default stages, the tune modes accepted, and which parameters train."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from tinyllava.components.base import Component

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from tinyllava.spec.runspec import StageSpec


class Recipe(Component):
    """A recipe fills in stages and decides per stage what trains.

    `tune_modes` lists the modes its stages may use, out of frozen, full, partial, lora and qlora;
    the runner checks every stage against it (and `needs_init_from` against the spec) before
    building the model.
    """

    kind: ClassVar[str] = "recipe"
    tune_modes: ClassVar[tuple[str, ...]] = ("frozen", "full")
    needs_init_from: ClassVar[bool] = False  # True: the run must start from a trained checkpoint (init_from)

    def default_stages(self) -> list[dict[str, Any]]:
        """Stages (raw dicts, as in YAML) used when a spec names this recipe and lists no stages."""
        return []

    def check_stage(self, stage: StageSpec, where: str = "") -> list[str]:
        """Problems with a stage's settings for this recipe, found before anything is built."""
        from tinyllava.training.parameters import mode_problems

        return mode_problems(stage, self.tune_modes, where)

    def prepare(self, model: nn.Module, stage: StageSpec) -> list[dict[str, Any]]:
        """Set what trains (wrapping adapter components in PEFT) and return optimizer parameter groups."""
        from tinyllava.training.parameters import apply_tuning

        return apply_tuning(model, stage, allowed_modes=self.tune_modes)
