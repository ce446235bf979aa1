"""The public API plugins build on: everything a plugin imports from tinyllava is here.

Import from `tinyllava.api` (or the modules it lists in `PUBLIC_MODULES`); every other module is private and
may change in any release. Importing this module is light: pydantic and pluggy, never torch or transformers.

Versioning. `PLUGIN_API_VERSION` is MAJOR.MINOR. A plugin declares the version it was written against in its
entry module, `TINYLLAVA_PLUGIN_API = "1.0"`; the loader accepts it when the major is the same and its minor
is not newer than this tinyllava's (a minor release only adds). A removal or an incompatible change bumps the
major, after at least one minor release in which the old name still works with a DeprecationWarning.
"""

from __future__ import annotations

from tinyllava.components.base import KINDS, Component, ComponentOptions
from tinyllava.components.benchmark import Benchmark, BenchmarkResult, DataLayoutError, EvalItem, ScoreTable
from tinyllava.components.chat_template import ChatTemplate, Encoded, Turn
from tinyllava.components.connector import Connector, ForeignProjector
from tinyllava.components.dataset import Dataset
from tinyllava.components.llm import LLM, LLMParts
from tinyllava.components.recipe import Recipe
from tinyllava.components.vision_tower import FeatureSelectionOptions, VisionParts, VisionTower
from tinyllava.constants import IGNORE_INDEX, IMAGE_PLACEHOLDER, IMAGE_TOKEN_INDEX
from tinyllava.plugins.hookspecs import hookimpl
from tinyllava.plugins.registry import ComponentConflictError, ComponentNotFoundError, get_registry

PLUGIN_API_VERSION = "1.0"

#: modules whose public names (no leading underscore) are part of the plugin API, besides this one
PUBLIC_MODULES: tuple[str, ...] = (
    "tinyllava.api",
    "tinyllava.components",  # the contracts, one module per kind
    "tinyllava.kits",  # shared bases: hf_family, factory_templates, tokenizers
    "tinyllava.templates.segmented",  # SegmentedTemplate and its helpers
    "tinyllava.interop.export_contract",  # refuse / NotExportable for hf_llava_export
    "tinyllava.interop.export_parts",  # causal_lm_part, hf_vision_part
    "tinyllava.testing",  # conformance kits, make_distribution, tiny helpers
)

__all__ = [
    "IGNORE_INDEX",
    "IMAGE_PLACEHOLDER",
    "IMAGE_TOKEN_INDEX",
    "KINDS",
    "LLM",
    "PLUGIN_API_VERSION",
    "PUBLIC_MODULES",
    "Benchmark",
    "BenchmarkResult",
    "ChatTemplate",
    "Component",
    "ComponentConflictError",
    "ComponentNotFoundError",
    "ComponentOptions",
    "Connector",
    "DataLayoutError",
    "Dataset",
    "Encoded",
    "EvalItem",
    "FeatureSelectionOptions",
    "ForeignProjector",
    "LLMParts",
    "Recipe",
    "ScoreTable",
    "Turn",
    "VisionParts",
    "VisionTower",
    "get_registry",
    "hookimpl",
]
