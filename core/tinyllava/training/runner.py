"""Run the stages of a spec: each stage builds its data, marks what trains, trains, and saves.

A stage starts from the previous stage's saved checkpoint (adapters merged in), so a stage after a
LoRA, QLoRA or DeepSpeed stage starts from plain full weights. With resume, finished stages are
reused and an interrupted stage continues from its last Trainer checkpoint (optimizer, scheduler
and RNG included).

Under torchrun every rank runs this function; rank 0 alone materialises data and writes
checkpoints while the others wait.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tinyllava.checkpoint.atomic import CheckpointWriteError, discard_partials, replace_symlink, write_text_atomic
from tinyllava.constants import MANIFEST_NAME
from tinyllava.spec.runspec import RunSpec, StageSpec, spec_to_dict

log = logging.getLogger(__name__)


class RunError(RuntimeError):
    """A run cannot start or continue; the message says how to fix it."""


@dataclass
class StageResult:
    name: str
    checkpoint: Path
    steps: int
    train_loss: float | None
    seconds: float


@dataclass
class RunResult:
    run_dir: Path
    checkpoint: Path
    stages: list[StageResult] = field(default_factory=list)


def stage_dir(spec: RunSpec, index: int, stage: StageSpec) -> Path:
    return spec.run_dir() / f"stage{index}-{stage.name}"


def last_trainer_checkpoint(folder: Path, world_size: int = 1) -> Path | None:
    """The newest complete Trainer checkpoint. Rank 0 writes trainer_state.json without waiting for the
    other ranks' RNG files, so with several processes those must be there too."""
    if not folder.is_dir():
        return None
    rng = ["rng_state.pth"] if world_size == 1 else [f"rng_state_{r}.pth" for r in range(world_size)]
    candidates = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    complete = [p for p in candidates if all((p / name).is_file() for name in ["trainer_state.json", *rng])]
    return max(complete, key=lambda p: int(p.name.split("-")[-1]), default=None)


def set_threads(spec: RunSpec, console: Console | None = None) -> None:
    """The spec's num_threads, else the cores free right now (see training.threads); the choice is printed."""
    import torch

    from tinyllava.training.threads import choose_threads

    choice = choose_threads(spec.num_threads)
    if choice.threads is not None:
        torch.set_num_threads(choice.threads)
    if console is not None:
        console.print(f"torch threads: {torch.get_num_threads()} ({choice.reason}; change with --set num_threads=N)",
                      highlight=False)


def materialize_data(registry: Any, data: Any, cache_root: Path) -> tuple[Path, Path | None]:
    if data.dataset is not None:
        dataset = registry.create("dataset", data.dataset.name, data.dataset.options)
        return dataset.materialize(cache_root)
    return Path(data.json_path), Path(data.image_root) if data.image_root else None


def print_parameter_table(console: Console, model: Any, stage: StageSpec) -> None:
    from tinyllava.training.parameters import parameter_table

    table = Table(title=f"stage {stage.name}: parameters")
    for col in ("component", "total", "trainable", "mode"):
        table.add_column(col, justify="right" if col in ("total", "trainable") else "left")
    for component, total, trainable, mode in parameter_table(model, stage):
        table.add_row(component, f"{total:,}", f"{trainable:,}", mode)
    console.print(table)


# -- checks before anything is built --------------------------------------------------------------


def _missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


def _recipe(spec: RunSpec, stage: StageSpec, registry: Any) -> Any:
    recipe_spec = spec.stage_recipe(stage)
    return registry.create("recipe", recipe_spec.name, recipe_spec.options)


def check_stages(spec: RunSpec, registry: Any) -> None:
    """Recipe modes, engines and optional dependencies of every stage, all reported at once."""
    from tinyllava.training.distributed import DeepSpeedConfigError, deepspeed_config, zero_stage
    from tinyllava.training.global_batch import BatchError, plan_batch

    problems: list[str] = []
    for index, stage in enumerate(spec.stages):
        where = f"stages.{index} ({stage.name})"
        recipe = _recipe(spec, stage, registry)
        problems += recipe.check_stage(stage, where=f"{where}, recipe {recipe.name!r}")
        if getattr(recipe, "needs_init_from", False) and spec.init_from is None:
            problems.append(f"{where}: recipe {recipe.name!r} finetunes a trained model; set init_from to a "
                            f"tinyllava checkpoint directory")
        try:
            plan_batch(stage, int(os.environ.get("WORLD_SIZE", "1")), where)
        except BatchError as exc:
            problems.append(str(exc))
        if stage.tune.uses_adapters and _missing("peft"):
            problems.append(f"{where}.tune: LoRA needs peft; pip install 'tinyllava[train]'")
        if stage.tune.uses_quantization and _missing("bitsandbytes"):
            problems.append(f"{where}.tune: QLoRA needs bitsandbytes; pip install 'tinyllava[bitsandbytes]'")
        if stage.deepspeed is not None:
            if _missing("deepspeed"):
                problems.append(f"{where}.deepspeed: DeepSpeed is not installed; pip install 'tinyllava[deepspeed]'")
                continue
            try:
                config = deepspeed_config(stage.deepspeed, f"{where}.deepspeed")
            except DeepSpeedConfigError as exc:
                problems.append(str(exc))
                continue
            if stage.tune.uses_quantization and zero_stage(config) == 3:
                problems.append(f"{where}: QLoRA cannot run under ZeRO-3 (4-bit weights cannot be partitioned); "
                                f"use deepspeed: zero2, or no DeepSpeed")
    if problems:
        raise RunError("the stages cannot run as written:\n" + "\n".join(f"  - {p}" for p in problems))


# -- multi-process helpers ------------------------------------------------------------------------


def _probe_batch(dataset: Any, collator: Any) -> dict[str, Any]:
    index = next((i for i in range(len(dataset)) if dataset.has_image(i)), 0)
    item = {k: v for k, v in dataset[index].items() if k != "image_key"}
    return collator([item])


def freeze_unreachable(model: Any, batch: dict[str, Any]) -> list[str]:
    """Freeze trainable parameters that one forward/backward leaves without a gradient, and name them.

    They could never change (AdamW skips parameters without a gradient), but DDP without
    find_unused_parameters would wait for their gradients forever. RNG state is left untouched.
    """
    import torch

    device = next(model.parameters()).device
    batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}  # flags such as use_cache
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    devices = [torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        model.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
    unreached = [n for n, p in trainable if p.grad is None]
    model.zero_grad(set_to_none=True)
    for n, p in trainable:
        if n in unreached:
            p.requires_grad_(False)
    return unreached


def _mixed_modalities(dataset: Any) -> bool:
    with_image = [image is not None for image in dataset.images]
    return any(with_image) and not all(with_image)


# -- the data path: packing, grouping, feature cache ----------------------------------------------


def packed_attention_mode(model: Any) -> str:
    """How packed rows get per-sample attention: `flash` (flash attention reads the samples' boundaries itself),
    `varlen` (SDPA switched to training.packed_attention for the stage) or `dense` (a block-diagonal mask, so
    rows no longer than the step's longest sample)."""
    import torch

    from tinyllava.training.packed_attention import can_switch, reaches_attention, varlen_attention

    impl = str(getattr(getattr(model.language_model, "config", None), "_attn_implementation", None) or "")
    if "flash" in impl and torch.cuda.is_available():
        return "flash"
    if not can_switch(model.language_model):
        return "dense"
    device = next(model.parameters()).device
    probe = {  # two 3-token samples in one row, no image: only checks that the LLM dispatches to our attention
        "input_ids": torch.zeros((1, 6), dtype=torch.long, device=device),
        "position_ids": torch.tensor([[0, 1, 2, 0, 1, 2]], device=device),
        "cu_seq_lens_q": torch.tensor([0, 3, 6], dtype=torch.int32, device=device),
        "use_cache": False,
    }
    probe["cu_seq_lens_k"] = probe["cu_seq_lens_q"]
    with varlen_attention(model.language_model):
        return "varlen" if reaches_attention(model, probe) else "dense"


def _feature_cache(spec: RunSpec, stage: StageSpec, model: Any, dataset: Any, images: Any, image_processor: Any,
                   settings: Any, ds_config: Any, console: Console) -> Any:
    """Point the dataset at the frozen tower's feature cache and return the batch resolver, or None when the
    tower trains, the stage is off the cache, the tower is not deterministic, or DeepSpeed partitions it."""
    from tinyllava.data.feature_cache import FeatureCache, FeatureResolver, tower_fingerprint, tower_is_deterministic

    if not stage.feature_cache or ds_config is not None or not any(dataset.has_image(i) for i in range(len(dataset))):
        return None
    if model.tower_trains():
        return None
    reason = tower_is_deterministic(model)
    if reason is not None:
        console.print(f"stage {stage.name}: no feature cache: {reason}")
        return None
    fingerprint = tower_fingerprint(model, image_processor, settings.image_preprocess,
                                    "bfloat16" if stage.bf16 else "none")
    cache = FeatureCache(spec.cache_root() / "features", fingerprint)
    root = dataset.image_root or Path(".")
    keys = [images.digest(root / image) if image is not None else None for image in dataset.images]
    images.save()
    dataset.use_feature_cache(cache, keys)
    return FeatureResolver(cache)


def dataloader_workers(stage: StageSpec, use_cuda: bool, world_size: int = 1) -> int:
    """The stage's dataloader_workers, or by default: on CUDA the cores left per process (up to 4), so images are
    decoded while the GPU computes; on CPU none. Training on the CPU, a worker only takes time from the compute
    threads: on the reference workload (2 cores, ~60 ms of image work in a 1-2 s step, less with the feature
    cache) one worker measured between 0.8x and 1.2x, within the noise of a shared machine."""
    if stage.dataloader_workers is not None:
        return stage.dataloader_workers
    if not use_cuda:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(4, cores // max(world_size, 1) - 1))


def _stage_trainer_class(base: type, sampler: Any, resolver: Any) -> type:
    """The Trainer with this stage's sampler (None: the Trainer's own) and feature resolver (None: none)."""
    if sampler is None and resolver is None:
        return base

    class StageTrainer(base):  # type: ignore[misc, valid-type]
        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            return sampler if sampler is not None else super()._get_train_sampler(train_dataset)

        def compute_loss(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            if resolver is not None:
                inputs = resolver(inputs, self.accelerator.unwrap_model(model))
            return super().compute_loss(model, inputs, *args, **kwargs)

    return StageTrainer


# -- the run --------------------------------------------------------------------------------------


def run_training(spec: RunSpec, *, resume: bool = False, console: Console | None = None,
                 registry: Any = None, overwrite: bool = False) -> RunResult:
    from tinyllava.training.lean_imports import import_training_stack

    import_training_stack()  # first, before anything imports transformers' trainer utilities
    from tinyllava.plugins.registry import get_registry
    from tinyllava.training.distributed import Processes
    from tinyllava.training.run_lock import acquire_run_lock

    console = console or Console()
    registry = registry or get_registry()
    set_threads(spec, console if os.environ.get("RANK", "0") == "0" else None)
    if any(stage.bf16 for stage in spec.stages):  # before the first bf16 op: see training.onednn_caches
        from tinyllava.training.onednn_caches import bound_onednn_caches

        bound_onednn_caches()
    check_stages(spec, registry)
    procs = Processes.from_env()
    procs.start(need_group=any(s.deepspeed for s in spec.stages))
    if not procs.is_main:
        console = Console(quiet=True)
    lock = acquire_run_lock(spec.run_dir(), console, enabled=procs.is_main)  # one run per directory
    existed = spec.run_dir().exists() and not overwrite
    try:
        return _run(spec, resume, console, registry, procs, overwrite)
    except BaseException:
        if procs.is_main and not existed:
            discard_unsaved_run(spec.run_dir())  # a refused or aborted start leaves nothing to trip the rerun
        raise
    finally:
        lock.release()
        procs.stop()


def has_saved_state(run_dir: Path) -> bool:
    """A Trainer checkpoint or a finished stage: something `--resume` can continue from."""
    return any(run_dir.glob("stage*/final")) or any(run_dir.glob("stage*/checkpoints/checkpoint-*"))


def discard_unsaved_run(run_dir: Path) -> None:
    import shutil

    if run_dir.is_dir() and not has_saved_state(run_dir):
        shutil.rmtree(run_dir, ignore_errors=True)


def check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse a start that would mix two runs, and a resume with nothing to resume."""
    from tinyllava.training.run_lock import refuse_if_locked

    if int(os.environ.get("RANK", "0")) == 0:  # the other ranks of a run: their rank 0 holds the lock
        refuse_if_locked(run_dir)  # another live train holds it: say so first, whatever the flags
    if resume and overwrite:
        raise RunError("--resume continues a run and --overwrite deletes it first; give one of them")
    if resume and not (run_dir / "spec.json").is_file():
        raise RunError(f"--resume: there is no run in {run_dir} to continue; drop --resume to start it")
    if overwrite and run_dir.exists() and any(run_dir.iterdir()) and not (run_dir / "spec.json").is_file():
        raise RunError(f"--overwrite: {run_dir} does not look like a tinyllava run (no spec.json); it was left "
                       f"alone: choose another name (--set name=...) or output_dir")
    if run_dir.exists() and any(run_dir.iterdir()) and not resume and not overwrite:
        raise RunError(f"{run_dir} already holds a run; pass --resume to continue it, --overwrite to replace it, "
                       f"or choose another name (--set name=...) or output_dir")


def _load_merged(path: Path, registry: Any) -> tuple[Any, Any, Any]:
    from tinyllava.checkpoint import load_checkpoint

    loaded = load_checkpoint(path, registry=registry, merge_adapters=True)
    loaded.model.train()
    return loaded.model, loaded.tokenizer, loaded.image_processor


@dataclass
class ModelSettings:
    """What the data pipeline needs from the model section: from the spec, else from the init_from checkpoint."""

    max_length: int
    image_preprocess: str
    chat_template: Any


def _init_settings(spec: RunSpec, model: Any) -> ModelSettings:
    from tinyllava.checkpoint import read_manifest
    from tinyllava.spec.runspec import ComponentSpec

    manifest = read_manifest(Path(spec.init_from))
    saved = manifest["components"]
    if spec.model is None:
        template = saved["chat_template"]
        return ModelSettings(manifest["max_length"], manifest["image_preprocess"],
                             ComponentSpec.model_validate({"name": template["name"], **template["options"]}))
    for kind in ("llm", "vision_tower", "connector"):
        wanted, found = getattr(spec.model, kind).name, saved[kind]["name"]
        if wanted != found:
            raise RunError(f"model.{kind}: the spec names {wanted!r} but init_from {spec.init_from} holds {found!r}; "
                           f"leave `model` out to train the checkpoint's model as it is")
    model.config.model_max_length = spec.model.max_length
    model.config.image_preprocess = spec.model.image_preprocess
    return ModelSettings(spec.model.max_length, spec.model.image_preprocess, spec.model.chat_template)


def _quiet_library_noise() -> None:
    """DeepSpeed calls torch.distributed functions that newer torch marks deprecated, once per step."""
    import warnings

    warnings.filterwarnings("ignore", message=r"`torch\.distributed\.\w+` is deprecated", category=FutureWarning)


def _run(spec: RunSpec, resume: bool, console: Console, registry: Any, procs: Any,
         overwrite: bool = False) -> RunResult:
    from transformers import set_seed
    from transformers.utils import logging as hf_logging

    from tinyllava.model.build import build_fresh

    hf_logging.disable_progress_bar()  # our own rich bars instead of tqdm's "Writing model shards"
    _quiet_library_noise()
    run_dir = spec.run_dir()
    spec_file = run_dir / "spec.json"
    check_run_dir(run_dir, resume, overwrite)
    if resume and spec_file.is_file():
        previous = json.loads(spec_file.read_text())
        if previous != spec_to_dict(spec):
            raise RunError(f"{run_dir}: the spec differs from the one this run started with; resume needs the same "
                           f"spec (saved in {spec_file})")
    procs.barrier()  # every rank has looked at the run dir before rank 0 writes into it
    if procs.is_main:
        if overwrite and run_dir.exists():
            import shutil

            console.print(f"--overwrite: deleting the previous run in {run_dir}")
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(spec_file, json.dumps(spec_to_dict(spec), indent=2))
    procs.barrier()
    set_seed(spec.seed)
    if spec.init_from is not None:
        model, tokenizer, image_processor = _load_merged(spec.init_from, registry)
        settings = _init_settings(spec, model)
    else:
        assert spec.model is not None  # the spec's validator guarantees model or init_from
        from tinyllava.training.distributed import deepspeed_config
        from tinyllava.training.global_batch import plan_batch
        from tinyllava.training.sharded_init import sharded_init

        first = spec.stages[0]  # under ZeRO-3 the model is built partitioned: no rank holds all of it
        with sharded_init(deepspeed_config(first.deepspeed), plan_batch(first, procs.world_size), first) as _keep:
            assembled = build_fresh(registry, spec.model)
        model, tokenizer, image_processor = assembled.model, assembled.tokenizer, assembled.image_processor
        if _keep is not None:
            from tinyllava.training.sharded_init import partitioned_share

            console.print(f"ZeRO-3 sharded init: {partitioned_share(model):.0%} of the weights were built "
                          f"partitioned over {procs.world_size} process(es)")
        settings = ModelSettings(spec.model.max_length, spec.model.image_preprocess, spec.model.chat_template)
    result = RunResult(run_dir=run_dir, checkpoint=run_dir)

    for index, stage in enumerate(spec.stages):
        final = stage_dir(spec, index, stage) / "final"
        if (final / MANIFEST_NAME).is_file():
            if not resume:
                raise RunError(f"{final} exists; pass --resume to reuse it")
            console.print(f"stage {stage.name}: already finished, loading {final}")
            model, tokenizer, image_processor = _load_merged(final, registry)
            result.stages.append(StageResult(stage.name, final, 0, None, 0.0))
            result.checkpoint = final
            continue
        try:
            stage_result = _run_stage(spec, index, stage, model, tokenizer, image_processor, settings, resume,
                                      console, registry, procs)
        except CheckpointWriteError as exc:  # disk full: the previous checkpoint is kept, the message says which
            raise RunError(str(exc)) from None
        result.stages.append(stage_result)
        result.checkpoint = final
        if index + 1 < len(spec.stages):
            model, tokenizer, image_processor = _load_merged(final, registry)
    if procs.is_main:
        replace_symlink(run_dir / "latest", os.path.relpath(result.checkpoint, run_dir))
    procs.barrier()
    return result


def _run_stage(spec: RunSpec, index: int, stage: StageSpec, model: Any, tokenizer: Any, image_processor: Any,
               settings: ModelSettings, resume: bool, console: Console, registry: Any, procs: Any) -> StageResult:
    import time

    import torch
    from transformers import TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback

    from tinyllava.checkpoint import save_checkpoint
    from tinyllava.data.dataset import Collator, SupervisedDataset
    from tinyllava.data.image_index import ImageIndex
    from tinyllava.data.records import load_records
    from tinyllava.training.distributed import deepspeed_config, reset_accelerate_state, zero_stage
    from tinyllava.training.freed_memory import keep_freed_memory
    from tinyllava.training.fused_ops import fused_training_ops
    from tinyllava.training.global_batch import plan_batch
    from tinyllava.training.matmul_precision import exact_attention, matmul_precision, shape_multiple
    from tinyllava.training.packed_attention import varlen_attention
    from tinyllava.training.parameters import prune_groups
    from tinyllava.training.progress import HistoryCallback, progress_callback
    from tinyllava.training.sharded_init import is_partitioned
    from tinyllava.training.trainer import ParameterTableCallback, TinyLlavaTrainer

    folder = stage_dir(spec, index, stage)
    final = folder / "final"
    template_spec = spec.stage_template(stage) or settings.chat_template
    started = time.time()
    set_seed(spec.seed + index)
    template = registry.create("chat_template", template_spec.name, template_spec.options)
    template.check_tokenizer(tokenizer)
    data_spec = spec.stage_data(stage)
    with procs.main_first():
        json_path, image_root = materialize_data(registry, data_spec, spec.run_dir().parent / ".data")
    cache_root = spec.cache_root()
    images = ImageIndex(cache_root / "images.json")
    with procs.main_first():  # rank 0 fills the image index and the token cache, the others read them
        checked = load_records(json_path, image_root, data_spec.on_bad_record, images=images,
                               max_pixels=data_spec.max_image_pixels)
        dataset = SupervisedDataset(
            checked.records, image_root, template, tokenizer, image_processor,
            model.config.image_seq_len, settings.max_length, settings.image_preprocess,
            template_spec={"name": template_spec.name, "options": template_spec.options},
            token_cache_dir=cache_root / "tokens",
        )
    if checked.problems:
        console.print(f"[yellow]stage {stage.name}: skipped {len(checked.problems)} bad record(s)[/]; first: "
                      f"{checked.problems[0]}")
    if dataset.truncated:
        console.print(f"[yellow]stage {stage.name}: {dataset.truncated} sample(s) longer than "
                      f"max_length={settings.max_length} were truncated[/]")
    if dataset.untrainable:
        console.print(f"[yellow]stage {stage.name}: {len(dataset.untrainable)} sample(s) had no trained token "
                      f"left after truncation and were left out (first: {dataset.untrainable[0]})[/]")
    if len(dataset) == 0:
        raise RunError(
            f"stage {stage.name}: no sample has a trained token left after truncation to "
            f"max_length={settings.max_length} ({len(dataset.untrainable)} left out); raise model.max_length"
        )
    partitioned = is_partitioned(model)  # built under ZeRO-3's sharded init: no forward pass before the engine
    attention = ("dense" if partitioned else packed_attention_mode(model)) if stage.packing else "padded"
    use_cuda = torch.cuda.is_available()
    multiple = shape_multiple(stage.matmul_precision, stage.bf16, use_cuda)
    collator = Collator(tokenizer.pad_token_id, image_seq_len=model.config.image_seq_len, pack=stage.packing,
                        pack_length=stage.pack_length, varlen=attention in ("flash", "varlen"), width_multiple=multiple)
    model.supervised_row_multiple = multiple
    recipe = _recipe(spec, stage, registry)
    model.train()
    param_groups = recipe.prepare(model, stage)
    registry.call_lifecycle("before_stage", stage_index=index, stage=stage, run_spec=spec, model=model)

    ds_config = deepspeed_config(stage.deepspeed)
    find_unused = stage.ddp_find_unused_parameters
    mixed = _mixed_modalities(dataset)
    tower_guard: Any = contextlib.nullcontext()
    if zero_stage(ds_config) == 3 and mixed:  # any number of processes: the same steps on 1 or N
        from tinyllava.training.tower_every_step import tower_every_step

        tower_guard = tower_every_step(model, _probe_batch(dataset, collator)["pixel_values"][:1] * 0)
        console.print(f"stage {stage.name}: ZeRO-3 on data mixing text-only and image samples: text-only batches "
                      f"run the vision tower on a dummy image (times zero), so every rank gathers the same weights")
    if use_cuda and ds_config is None:
        model.to(torch.device("cuda", procs.local_rank))  # where the Trainer would put it anyway
    # what trains never depends on the number of processes or the engine: whatever one step leaves without a
    # gradient is frozen everywhere (DDP would wait for it forever; AdamW would only decay it)
    # (a partitioned model cannot run before the engine: ZeRO-3 gives what no step reaches a zero gradient)
    unreached = [] if partitioned else freeze_unreachable(model, _probe_batch(dataset, collator))
    if unreached:
        param_groups = prune_groups(param_groups)
        console.print(f"stage {stage.name}: {len(unreached)} parameter(s) get no gradient and stay frozen "
                      f"(first: {unreached[0]})")
    if procs.world_size > 1 and ds_config is None:
        only_images_reach = stage.tune.vision_tower.trains or stage.tune.connector.trains
        if find_unused is None:
            find_unused = mixed and only_images_reach
            if find_unused:
                console.print(f"stage {stage.name}: the data mixes text-only and image samples; DDP looks for "
                              f"unused parameters each step")
        elif not find_unused and mixed and only_images_reach:
            console.print(f"[yellow]stage {stage.name}: ddp_find_unused_parameters is false but the data mixes "
                          f"text-only and image samples: a text-only batch will stall DDP; leave it unset[/]")

    batch = plan_batch(stage, procs.world_size)
    console.print(f"stage {stage.name}: {batch.describe()}")
    resolver = _feature_cache(spec, stage, model, dataset, images, image_processor, settings, ds_config, console)
    workers = dataloader_workers(stage, use_cuda, procs.world_size)
    sampler = None
    if stage.group_by_length:
        from tinyllava.data.sampler import ModalityLengthGroupedSampler

        sampler = ModalityLengthGroupedSampler(
            dataset.lengths, [dataset.has_image(i) for i in range(len(dataset))],
            batch.per_device * procs.world_size, seed=spec.seed + index,
        )

    args = TrainingArguments(
        output_dir=str(folder / "checkpoints"),
        per_device_train_batch_size=batch.per_device,
        gradient_accumulation_steps=batch.grad_accum,
        learning_rate=stage.lr,
        num_train_epochs=stage.epochs,
        max_steps=stage.max_steps,
        weight_decay=stage.weight_decay,
        warmup_steps=stage.warmup_ratio,  # a float below 1 is a ratio of the total steps
        lr_scheduler_type=stage.scheduler,
        max_grad_norm=stage.max_grad_norm,
        logging_steps=stage.logging_steps,
        save_strategy="steps",
        save_steps=stage.save_steps,
        save_total_limit=stage.save_total_limit,
        report_to=["tensorboard"],
        seed=spec.seed + index,
        data_seed=spec.seed + index,
        remove_unused_columns=False,
        dataloader_num_workers=workers,
        dataloader_persistent_workers=workers > 0,
        bf16=stage.bf16,
        disable_tqdm=True,
        use_cpu=not use_cuda,
        save_only_model=False,
        deepspeed=ds_config,
        ddp_backend=None if use_cuda or procs.world_size == 1 else "gloo",
        ddp_find_unused_parameters=bool(find_unused) if procs.world_size > 1 else None,
        **({"activation_checkpointing": True} if stage.gradient_checkpointing else {}),
    )
    trainer = _stage_trainer_class(TinyLlavaTrainer, sampler, resolver)(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        param_groups=param_groups,
        callbacks=[
            ParameterTableCallback(lambda m: print_parameter_table(console, m, stage)),
            progress_callback(f"stage {index + 1}/{len(spec.stages)} {stage.name}"),
            HistoryCallback(folder, stage.name),
        ],
    )
    trainer.remove_callback(PrinterCallback)  # the rich bar shows loss and lr instead
    if procs.is_main:
        discard_partials(folder)  # what a save killed half-way left behind
    cpu_medium = not use_cuda and not stage.bf16 and stage.matmul_precision == "medium"
    resume_from = last_trainer_checkpoint(folder / "checkpoints", procs.world_size) if resume else None
    if resume_from is not None:
        console.print(f"stage {stage.name}: resuming from {resume_from}")
    elif resume:
        console.print(f"stage {stage.name}: no checkpoint of this stage was saved yet; it starts at step 0")
    with (tower_guard, varlen_attention(model.language_model) if attention == "varlen" else contextlib.nullcontext(),
          fused_training_ops(model.language_model), keep_freed_memory(),  # see training.fused_ops, .freed_memory
          matmul_precision(stage.matmul_precision, use_cuda),
          # a float32 stage whose matmuls round to bf16 on the CPU: the tower's attention stays exact, as the LLM's
          exact_attention(model.vision_tower) if cpu_medium else contextlib.nullcontext()):
        output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    # ZeRO-3 holds a slice of each weight per rank: gather them (a collective, so on every rank)
    state_dict = trainer.accelerator.get_state_dict(trainer.deepspeed) if trainer.is_deepspeed_enabled else None
    if procs.is_main:
        model.eval()
        save_checkpoint(
            final, model, tokenizer, image_processor,
            chat_template={"name": template_spec.name, "options": template_spec.options},
            spec=spec_to_dict(spec), stage=stage.name, registry=registry,
            state_dict=state_dict, save_format=stage.resolved_save_format(),
            previous=str(last_trainer_checkpoint(folder / "checkpoints") or ""),
        )
        registry.call_lifecycle("after_stage", stage_index=index, stage=stage, run_spec=spec,
                                checkpoint_dir=str(final))
    procs.barrier()
    steps, loss = trainer.state.global_step, output.training_loss
    trainer.accelerator.free_memory()
    del trainer
    if ds_config is not None:
        reset_accelerate_state()
    return StageResult(stage.name, final, steps, loss, time.time() - started)
