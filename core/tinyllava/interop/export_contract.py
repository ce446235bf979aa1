"""What a component hands the hf-llava exporter, and how it says no.

Each component kind has an `hf_llava_export(...)` method (see `tinyllava.components`): it returns an
`HFLlavaPart` (its piece of `LlavaConfig`, where its weights go in `LlavaForConditionalGeneration`, what
the processor must know) or raises `NotExportable` with the reason. The default refuses, so a plugin that
says nothing is never exported by guesswork. Import-light: nothing heavy is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NoReturn

# LlavaForConditionalGeneration (transformers 5) state-dict prefixes
LM_PREFIX = "model.language_model."
LM_HEAD_PREFIX = "lm_head."
TOWER_PREFIX = "model.vision_tower."
PROJECTOR_PREFIX = "model.multi_modal_projector."


class NotExportable(Exception):
    """A component LLaVA's layout cannot express; `component` names it (e.g. "connector 'qformer'")."""

    def __init__(self, component: str, reason: str) -> None:
        super().__init__(f"{component}: {reason}")
        self.component = component
        self.reason = reason


@dataclass
class HFLlavaPart:
    """One component's share of an exported LlavaForConditionalGeneration.

    config: the transformers sub-config as a dict (`text_config` for an LLM, `vision_config` for a tower;
        empty for a connector).
    keys: every key of the component module's own state dict -> its key in LlavaForConditionalGeneration.
    llava: top-level LlavaConfig fields this component decides (e.g. `vision_feature_layer`,
        `projector_hidden_act`).
    processor: LlavaProcessor fields (`patch_size`, `num_additional_image_tokens`, ...).
    notes: sentences for the model card (how the component was mapped).
    extra: weights LLaVA needs that the component has not (e.g. an identity `linear_2`), keyed as in
        LlavaForConditionalGeneration.
    """

    config: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    llava: dict[str, Any] = field(default_factory=dict)
    processor: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def component_label(component: Any) -> str:
    """"llm 'llama'": how messages name a component."""
    return f"{component.kind} {component.name or type(component).__name__!r}"


def not_exportable_by_default(component: Any) -> NotExportable:
    return NotExportable(
        component_label(component),
        f"its plugin ({type(component).__module__}) does not describe it in transformers' LLaVA layout "
        "(no hf_llava_export), so it cannot be exported",
    )


def refuse(component: Any, reason: str) -> NoReturn:
    """Raise NotExportable for `component` (a plugin's one-line refusal)."""
    raise NotExportable(component_label(component), reason)
