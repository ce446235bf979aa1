"""The pluggy hooks a plugin may implement.

Registration hooks return a mapping of component name -> lazy reference ("package.module:Class"),
so listing components never imports the component modules (and so never imports torch).
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "tinyllava"
ENTRY_POINT_GROUP = "tinyllava.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# kind -> registration hook name
REGISTRATION_HOOKS: dict[str, str] = {
    "llm": "register_llms",
    "vision_tower": "register_vision_towers",
    "connector": "register_connectors",
    "chat_template": "register_chat_templates",
    "recipe": "register_recipes",
    "benchmark": "register_benchmarks",
    "dataset": "register_datasets",
}


#: hooks the trainer and evaluator call through `pm.hook.<name>` (Registry.call_lifecycle)
LIFECYCLE_HOOKS: tuple[str, ...] = ("before_stage", "after_stage", "after_evaluation")


class TinyLlavaHookSpecs:
    @hookspec
    def register_llms(self) -> dict[str, str]:
        """Return {name: "module:Class"} for each LLM this plugin provides."""

    @hookspec
    def register_vision_towers(self) -> dict[str, str]:
        """Return {name: "module:Class"} for each vision tower."""

    @hookspec
    def register_connectors(self) -> dict[str, str]:
        """Return {name: "module:Class"} for each connector."""

    @hookspec
    def register_chat_templates(self) -> dict[str, str]:
        """Return {name: "module:Class"} for each chat template."""

    @hookspec
    def register_recipes(self) -> dict[str, str]:
        """Return {name: "module:Class"} for each training recipe."""

    @hookspec
    def register_benchmarks(self) -> dict[str, str]:
        """Return {name: "module:Class"} for each benchmark."""

    @hookspec
    def register_datasets(self) -> dict[str, str]:
        """Return {name: "module:Class"} for each dataset generator."""

    # -- lifecycle hooks: an implementation takes any subset of the arguments, by name; its return value is
    # ignored; an exception is logged with the plugin's id and the run goes on (the other plugins' hooks too).
    @hookspec
    def before_stage(self, stage_index: int, stage: Any, run_spec: Any, model: Any) -> None:
        """Called by the trainer before training stage `stage_index` (0-based) starts, after its trainable
        parameters are set: `stage` is the StageSpec, `run_spec` the whole RunSpec, `model` the TinyLlava
        module about to train (a hook may inspect it, e.g. count trainable parameters, or register torch hooks)."""

    @hookspec
    def after_stage(self, stage_index: int, stage: Any, run_spec: Any, checkpoint_dir: str) -> None:
        """Called by the trainer after stage `stage_index` saved its checkpoint in `checkpoint_dir` (a str path
        holding `tinyllava.json`, weights, tokenizer and image processor)."""

    @hookspec
    def after_evaluation(self, benchmark: str, metrics: dict[str, Any], output_dir: str) -> None:
        """Called by the evaluator after `benchmark` (its name) was scored: `metrics` is the flat, JSON-ready
        dict written to its results file, `output_dir` the folder holding its answers and results."""
