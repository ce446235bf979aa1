"""RunSpec: one YAML file describes a whole run (model, data, stages, output).

Component slots are `{name: <registered name>, <that component's options>}`; the options are
validated by the component's own pydantic Options model once the plugins are known.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from tinyllava.spec.errors import SpecError, pydantic_problems
from tinyllava.spec.overrides import apply_overrides

COMPONENT_KIND_KEY = "x-tinyllava-kind"


def _slot(kind: str, **kwargs: Any) -> Any:
    return Field(json_schema_extra={COMPONENT_KIND_KEY: kind}, **kwargs)


class ComponentSpec(BaseModel):
    """`{name: ..., **options}`; a bare string is shorthand for `{name: <string>}`."""

    model_config = ConfigDict(extra="allow")

    name: str

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        return value

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class DataSpec(StrictModel):
    """Training data: a LLaVA-format JSON file with an image root, or a dataset plugin."""

    json_path: Path | None = Field(None, description="LLaVA-format JSON file")
    image_root: Path | None = Field(None, description="folder that image paths in the JSON are relative to")
    dataset: ComponentSpec | None = _slot("dataset", default=None, description="a dataset plugin instead of JSON")
    on_bad_record: Literal["stop", "skip"] = Field(
        "stop", description="stop: refuse to train on bad records; skip: drop them and report the count"
    )
    max_image_pixels: int = Field(
        64_000_000, gt=0, description="images with more pixels (width x height) are bad records, refused before "
        "they are decoded (decompression bombs)"
    )

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.json_path is None) == (self.dataset is None):
            raise ValueError("give exactly one of json_path (with image_root) or dataset")
        return self


TuneMode = Literal["frozen", "full", "partial", "lora", "qlora"]
TUNE_MODES: tuple[str, ...] = ("frozen", "full", "partial", "lora", "qlora")
ADAPTER_MODES: tuple[str, ...] = ("lora", "qlora")


class LoraSpec(StrictModel):
    """PEFT LoRA settings for one component."""

    r: int = Field(16, ge=1, description="rank of the update matrices")
    alpha: float = Field(32.0, gt=0, description="scaling numerator (the update is scaled by alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA input")
    target_modules: list[str] | None = Field(
        None, description="module names to adapt (PEFT matching); default: every Linear of the component except heads"
    )

    @field_validator("target_modules")
    @classmethod
    def _non_empty_targets(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("an empty list adapts nothing; leave target_modules out to adapt every Linear layer")
        return value


class QuantSpec(StrictModel):
    """bitsandbytes quantisation of a component's frozen Linear layers (QLoRA)."""

    bits: Literal[4, 8] = Field(4, description="4 (NF4/FP4 QLoRA) or 8 (LLM.int8)")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type")
    double_quant: bool = Field(True, description="also quantise the 4-bit block scales")
    compute_dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        None, description="4-bit matmul dtype (default: bfloat16 when the stage runs bf16, else float32)"
    )


class ComponentTune(StrictModel):
    """How one component trains. A bare string is shorthand for `{mode: <string>}`.

    Comparing with a string compares the mode (`tune.llm == "full"`), so specs written with the
    shorthand read the same in code.
    """

    mode: TuneMode = "frozen"
    from_layer: int | None = Field(
        None, description="partial: train the blocks from this index on (negative counts from the end)"
    )
    lora: LoraSpec | None = Field(None, description="lora/qlora: adapter settings (defaults filled in)")
    quant: QuantSpec | None = Field(None, description="qlora: quantisation settings (defaults filled in)")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"mode": value}
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ComponentTune:
        if self.mode == "partial" and self.from_layer is None:
            raise ValueError("mode 'partial' needs from_layer: write {mode: partial, from_layer: K}")
        if self.mode != "partial" and self.from_layer is not None:
            raise ValueError(f"from_layer only applies to mode 'partial' (mode is {self.mode!r}); remove it")
        if self.mode not in ADAPTER_MODES and self.lora is not None:
            raise ValueError(f"lora settings only apply to modes lora/qlora (mode is {self.mode!r}); remove them")
        if self.mode != "qlora" and self.quant is not None:
            raise ValueError(f"quant settings only apply to mode 'qlora' (mode is {self.mode!r}); remove them")
        return self

    @model_serializer(mode="wrap")
    def _compact(self, handler: Any) -> Any:
        data = handler(self)
        if not isinstance(data, dict):
            return data
        data = {k: v for k, v in data.items() if v is not None}
        return data["mode"] if list(data) == ["mode"] else data

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = handler(core_schema)
        return {"anyOf": [{"type": "string", "enum": list(TUNE_MODES)}, schema]}

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self.mode == other
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    @property
    def is_adapter(self) -> bool:
        return self.mode in ADAPTER_MODES

    @property
    def trains(self) -> bool:
        return self.mode != "frozen"

    def lora_settings(self) -> LoraSpec:
        return self.lora or LoraSpec()

    def quant_settings(self) -> QuantSpec:
        return self.quant or QuantSpec()

    def describe(self) -> str:
        """Short text for tables: `partial from 2`, `lora r16`, `qlora nf4 r16`."""
        if self.mode == "partial":
            return f"partial from {self.from_layer}"
        if self.mode == "lora":
            return f"lora r{self.lora_settings().r}"
        if self.mode == "qlora":
            q = self.quant_settings()
            kind = q.quant_type if q.bits == 4 else "int8"
            return f"qlora {kind} r{self.lora_settings().r}"
        return self.mode


class TuneSpec(StrictModel):
    """How each component trains in a stage: frozen, full, partial (from a block index), lora or qlora.

    Each recipe declares the modes it accepts.
    """

    llm: ComponentTune = Field(default_factory=lambda: ComponentTune(mode="frozen"))
    vision_tower: ComponentTune = Field(default_factory=lambda: ComponentTune(mode="frozen"))
    connector: ComponentTune = Field(default_factory=lambda: ComponentTune(mode="full"))

    def of(self, component: str) -> ComponentTune:
        return getattr(self, component)

    @property
    def uses_adapters(self) -> bool:
        return any(self.of(c).is_adapter for c in ("llm", "vision_tower", "connector"))

    @property
    def uses_quantization(self) -> bool:
        return any(self.of(c).mode == "qlora" for c in ("llm", "vision_tower", "connector"))


class ComponentLR(StrictModel):
    llm: float | None = None
    vision_tower: float | None = None
    connector: float | None = None


class StageSpec(StrictModel):
    name: str
    recipe: ComponentSpec | None = _slot("recipe", default=None, description="defaults to the run's recipe")
    chat_template: ComponentSpec | None = _slot(
        "chat_template", default=None, description="defaults to model.chat_template"
    )
    data: DataSpec | None = Field(None, description="defaults to the run's data")
    tune: TuneSpec = Field(default_factory=TuneSpec)
    lr: float = Field(2e-5, gt=0, description="learning rate for every trainable component")
    component_lr: ComponentLR = Field(default_factory=ComponentLR, description="per-component lr overrides")
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="stop after this many optimizer steps (-1: use epochs)")
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    global_batch_size: int | None = Field(
        None, ge=1,
        description="samples per optimizer step over all processes (default: batch_size × grad_accum, the step of "
        "one process); kept for any number of processes by lowering the accumulation (then the per-process batch), "
        "so the learning-rate schedule does not change",
    )
    batch_scaling: Literal["global", "per_process"] = Field(
        "global",
        description="global: --nproc/--nnodes keep the global batch; per_process: batch_size and grad_accum are "
        "per process, so the global batch grows with the number of processes",
    )
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="share of the steps spent warming up")
    scheduler: str = "cosine"
    max_grad_norm: float = 1.0
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(500, ge=1, description="checkpoint every N optimizer steps (and at the end)")
    save_total_limit: int | None = 2
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward (less memory)")
    bf16: bool = Field(False, description="bfloat16 mixed precision (autocast; master weights stay float32)")
    matmul_precision: Literal["auto", "highest", "high", "medium"] = Field(
        "auto",
        description="float32 matrix multiplies: highest (exact), high (TF32 on CUDA), medium (bfloat16 inputs, "
        "float32 sums, on CUDA and on CPUs with AMX/AVX512-BF16: the CPU's TF32); auto: high on CUDA, else highest",
    )
    save_format: Literal["auto", "full", "adapters"] = Field(
        "auto",
        description="full: one model.safetensors (adapters merged in); adapters: base weights plus PEFT adapters "
        "under adapters/<component>/; auto: adapters when the stage trains LoRA/QLoRA, else full",
    )
    deepspeed: str | None = Field(
        None,
        description="DeepSpeed config: zero2, zero3, zero3_offload (built in, same as configs/deepspeed/*.json) "
        "or the path of a JSON file",
    )
    ddp_find_unused_parameters: bool | None = Field(
        None,
        description="multi-process runs: DDP's find_unused_parameters (default: on only when the data mixes "
        "text-only and image samples while the vision tower or connector trains)",
    )
    packing: bool = Field(
        True,
        description="pack each step's samples into fewer rows (position ids restart per sample, attention never "
        "crosses samples, each sample's loss unchanged) instead of padding every sample to the longest",
    )
    pack_length: int | None = Field(
        None, ge=8,
        description="packing: longest packed row in positions (default: the step's longest sample, so rows never "
        "grow and masked attention never costs more; with flash attention on CUDA all samples share one row)",
    )
    group_by_length: bool = Field(
        False,
        description="batches of one modality (image or text-only) and similar length, shuffled (less padding; "
        "every sample still once per epoch)",
    )
    dataloader_workers: int | None = Field(
        None, ge=0,
        description="background processes that read and preprocess images (0: in the training process; default: "
        "on CUDA one per spare core up to 4, on CPU none, where a worker takes time from the compute threads)",
    )
    feature_cache: bool = Field(
        True,
        description="when the vision tower is frozen, cache its features per image (under the run's cache_dir) "
        "and skip the tower and the image decoding for images seen before",
    )

    def resolved_save_format(self) -> str:
        if self.save_format == "auto":
            return "adapters" if self.tune.uses_adapters else "full"
        return self.save_format


class ModelSpec(StrictModel):
    llm: ComponentSpec = _slot("llm")
    vision_tower: ComponentSpec = _slot("vision_tower")
    connector: ComponentSpec = _slot("connector")
    chat_template: ComponentSpec = _slot("chat_template")
    image_preprocess: Literal["square", "pad"] = Field(
        "square", description="square: resize; pad: pad to square with the processor's mean colour, then resize"
    )
    max_length: int = Field(2048, ge=8, description="longest training sequence in tokens, image tokens included")


class RunSpec(StrictModel):
    name: str = "run"
    model: ModelSpec | None = Field(
        None, description="the model to build; may be left out with init_from (the checkpoint's model is used)"
    )
    data: DataSpec | None = None
    recipe: ComponentSpec | None = _slot("recipe", default=None, description="fills `stages` when absent")
    stages: list[StageSpec]
    output_dir: Path = Path("runs")
    seed: int = 0
    init_from: Path | None = Field(
        None, description="start from an existing tinyllava checkpoint (adapters in it are merged first)"
    )
    num_threads: int | Literal["auto"] | None = Field(
        None,
        description="torch CPU threads; auto (and the default, unless OMP_NUM_THREADS is set): the cores that the "
        "load average says are free right now, divided among the processes",
    )
    cache_dir: Path | None = Field(
        None,
        description="tokenised data, image checks and frozen-tower features, keyed by content and shared by runs "
        "(default: <output_dir>/.cache)",
    )

    @model_validator(mode="after")
    def _model_or_init(self) -> RunSpec:
        if self.model is None and self.init_from is None:
            raise ValueError("give `model` (what to build) or `init_from` (a trained tinyllava checkpoint)")
        return self

    @field_validator("num_threads")
    @classmethod
    def _positive_threads(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 1:
            raise ValueError("give 1 or more threads, or auto")
        return value

    @field_validator("stages")
    @classmethod
    def _non_empty(cls, stages: list[StageSpec]) -> list[StageSpec]:
        if not stages:
            raise ValueError("at least one stage is needed (or name a recipe that provides stages)")
        names = [s.name for s in stages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stage names must be unique; repeated: {', '.join(dupes)}")
        return stages

    def run_dir(self) -> Path:
        return self.output_dir / self.name

    def cache_root(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.output_dir / ".cache"

    def stage_data(self, stage: StageSpec) -> DataSpec:
        data = stage.data or self.data
        if data is None:
            raise SpecError([f"stages.{stage.name}.data: no data for this stage and no run-level `data`"])
        return data

    def stage_recipe(self, stage: StageSpec) -> ComponentSpec:
        recipe = stage.recipe or self.recipe
        if recipe is None:
            raise SpecError([f"stages.{stage.name}.recipe: no recipe for this stage and no run-level `recipe`"])
        return recipe

    def stage_template(self, stage: StageSpec) -> ComponentSpec | None:
        """The stage's template, else the model's; None when both are left to an init_from checkpoint."""
        if stage.chat_template is not None:
            return stage.chat_template
        return self.model.chat_template if self.model is not None else None


# -- loading and resolution -------------------------------------------------------------------


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SpecError([f"spec file {path} does not exist"])
    try:
        raw = yaml.safe_load(path.read_bytes().decode("utf-8-sig")) or {}
    except yaml.YAMLError as exc:
        raise SpecError([f"YAML syntax error: {exc}"], str(path)) from None
    except UnicodeDecodeError as exc:
        raise SpecError([f"not UTF-8 text (byte {exc.start}: {exc.reason}); save the spec as UTF-8"],
                        str(path)) from None
    if not isinstance(raw, dict):
        raise SpecError(["the top level must be a mapping"], str(path))
    return raw


def load_spec(path: str | Path, overrides: list[str] | None = None, registry: Any = None) -> RunSpec:
    return resolve_spec(read_yaml(path), overrides, registry=registry, source=str(path))


def resolve_spec(
    raw: dict[str, Any], overrides: list[str] | None = None, registry: Any = None, source: str = ""
) -> RunSpec:
    """Expand the recipe's stages, apply overrides, validate the shape, then every component's options."""
    from tinyllava.plugins.registry import get_registry

    registry = registry or get_registry()
    if not isinstance(raw, dict):
        raise SpecError([f"the top level must be a mapping, not {type(raw).__name__}"], source)
    raw = copy.deepcopy(raw)
    _expand_recipe_stages(raw, registry, source)
    apply_overrides(raw, overrides or [])
    try:
        spec = RunSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(pydantic_problems(exc, model=RunSpec), source) from None
    problems: list[str] = []
    for path, kind, slot in iter_component_slots(spec):
        problems += _validate_component(registry, path, kind, slot)
    if problems:
        raise SpecError(problems, source)
    return spec


def _expand_recipe_stages(raw: dict[str, Any], registry: Any, source: str) -> None:
    if raw.get("stages") or not raw.get("recipe"):
        return
    recipe = ComponentSpec.model_validate(raw["recipe"])
    problems = _validate_component(registry, "recipe", "recipe", recipe)
    if problems:
        raise SpecError(problems, source)
    component = registry.create("recipe", recipe.name, recipe.options)
    raw["stages"] = component.default_stages()


def iter_component_slots(spec: RunSpec) -> list[tuple[str, str, ComponentSpec]]:
    slots: list[tuple[str, str, ComponentSpec]] = []
    for kind in ("llm", "vision_tower", "connector", "chat_template"):
        if spec.model is not None:
            slots.append((f"model.{kind}", kind, getattr(spec.model, kind)))
    if spec.recipe is not None:
        slots.append(("recipe", "recipe", spec.recipe))
    if spec.data is not None and spec.data.dataset is not None:
        slots.append(("data.dataset", "dataset", spec.data.dataset))
    for i, stage in enumerate(spec.stages):
        if stage.recipe is not None:
            slots.append((f"stages.{i}.recipe", "recipe", stage.recipe))
        if stage.chat_template is not None:
            slots.append((f"stages.{i}.chat_template", "chat_template", stage.chat_template))
        if stage.data is not None and stage.data.dataset is not None:
            slots.append((f"stages.{i}.data.dataset", "dataset", stage.data.dataset))
    return slots


def _validate_component(registry: Any, path: str, kind: str, slot: ComponentSpec) -> list[str]:
    """Validate a slot's options with its component's Options; fill in defaults in place."""
    from tinyllava.plugins.registry import ComponentConflictError, ComponentNotFoundError

    try:
        cls = registry.component_class(kind, slot.name)
    except (ComponentNotFoundError, ComponentConflictError) as exc:
        return [f"{path}.name: {exc}"]
    except Exception as exc:  # noqa: BLE001 - a broken plugin module
        return [f"{path}.name: could not import {kind} {slot.name!r}: {type(exc).__name__}: {exc}"]
    try:
        options = cls.Options.model_validate(slot.options)
    except ValidationError as exc:
        return pydantic_problems(exc, prefix=path, model=cls.Options)
    extras = slot.model_extra if slot.model_extra is not None else {}
    extras.clear()
    extras.update(options.model_dump(mode="json"))
    return []


def spec_to_dict(spec: RunSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json")
