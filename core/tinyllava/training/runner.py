"""Run the stages of a spec: each stage builds its data, marks what trains, trains, and saves.

A stage starts from the previous stage's output. With resume, finished stages are reused and an
interrupted stage continues from its last Trainer checkpoint (optimizer, scheduler and RNG included).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

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


def last_trainer_checkpoint(folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
    candidates = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    complete = [p for p in candidates if (p / "trainer_state.json").is_file()]
    return max(complete, key=lambda p: int(p.name.split("-")[-1]), default=None)


def set_threads(spec: RunSpec) -> None:
    import torch

    if spec.num_threads:
        torch.set_num_threads(spec.num_threads)


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


def run_training(spec: RunSpec, *, resume: bool = False, console: Console | None = None,
                 registry: Any = None) -> RunResult:
    import time

    import torch
    from transformers import TrainingArguments, set_seed
    from transformers.utils import logging as hf_logging

    from tinyllava.checkpoint import load_checkpoint, save_checkpoint
    from tinyllava.data.dataset import Collator, SupervisedDataset
    from tinyllava.data.records import load_records
    from tinyllava.model.build import build_fresh
    from tinyllava.plugins.registry import get_registry
    from tinyllava.training.trainer import RichProgressCallback, TinyLlavaTrainer

    hf_logging.disable_progress_bar()  # our own rich bars instead of tqdm's "Writing model shards"
    console = console or Console()
    registry = registry or get_registry()
    set_threads(spec)
    run_dir = spec.run_dir()
    spec_file = run_dir / "spec.json"
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        raise RunError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another name "
                       f"(--set name=...) or output_dir")
    if resume and spec_file.is_file():
        previous = json.loads(spec_file.read_text())
        if previous != spec_to_dict(spec):
            raise RunError(f"{run_dir}: the spec differs from the one this run started with; resume needs the same "
                           f"spec (saved in {spec_file})")
    run_dir.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(json.dumps(spec_to_dict(spec), indent=2))
    set_seed(spec.seed)

    if spec.init_from is not None:
        loaded = load_checkpoint(spec.init_from, registry=registry)
        model, tokenizer, image_processor = loaded.model, loaded.tokenizer, loaded.image_processor
    else:
        assembled = build_fresh(registry, spec.model)
        model, tokenizer, image_processor = assembled.model, assembled.tokenizer, assembled.image_processor
    result = RunResult(run_dir=run_dir, checkpoint=run_dir)

    for index, stage in enumerate(spec.stages):
        folder = stage_dir(spec, index, stage)
        final = folder / "final"
        template_spec = spec.stage_template(stage)
        if (final / MANIFEST_NAME).is_file():
            if not resume:
                raise RunError(f"{final} exists; pass --resume to reuse it")
            console.print(f"stage {stage.name}: already finished, loading {final}")
            loaded = load_checkpoint(final, registry=registry)
            model, tokenizer, image_processor = loaded.model, loaded.tokenizer, loaded.image_processor
            result.stages.append(StageResult(stage.name, final, 0, None, 0.0))
            result.checkpoint = final
            continue
        started = time.time()
        set_seed(spec.seed + index)
        template = registry.create("chat_template", template_spec.name, template_spec.options)
        template.check_tokenizer(tokenizer)
        data_spec = spec.stage_data(stage)
        json_path, image_root = materialize_data(registry, data_spec, run_dir.parent / ".data")
        checked = load_records(json_path, image_root, data_spec.on_bad_record)
        if checked.problems:
            console.print(f"[yellow]stage {stage.name}: skipped {len(checked.problems)} bad record(s)[/]; first: "
                          f"{checked.problems[0]}")
        dataset = SupervisedDataset(
            checked.records, image_root, template, tokenizer, image_processor,
            model.config.image_seq_len, spec.model.max_length, spec.model.image_preprocess,
        )
        if dataset.truncated:
            console.print(f"[yellow]stage {stage.name}: {dataset.truncated} sample(s) longer than "
                          f"max_length={spec.model.max_length} were truncated[/]")
        if dataset.untrainable:
            console.print(f"[yellow]stage {stage.name}: {len(dataset.untrainable)} sample(s) had no trained token "
                          f"left after truncation and were left out (first: {dataset.untrainable[0]})[/]")
        recipe_spec = spec.stage_recipe(stage)
        recipe = registry.create("recipe", recipe_spec.name, recipe_spec.options)
        model.train()
        param_groups = recipe.prepare(model, stage)
        print_parameter_table(console, model, stage)
        registry.call_lifecycle("before_stage", stage_index=index, stage=stage, run_spec=spec, model=model)

        use_cuda = torch.cuda.is_available()
        args = TrainingArguments(
            output_dir=str(folder / "checkpoints"),
            per_device_train_batch_size=stage.batch_size,
            gradient_accumulation_steps=stage.grad_accum,
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
            dataloader_num_workers=0,
            bf16=stage.bf16,
            disable_tqdm=True,
            use_cpu=not use_cuda,
            save_only_model=False,
            **({"activation_checkpointing": True} if stage.gradient_checkpointing else {}),
        )
        trainer = TinyLlavaTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            data_collator=Collator(tokenizer.pad_token_id),
            param_groups=param_groups,
            callbacks=[RichProgressCallback(f"stage {index + 1}/{len(spec.stages)} {stage.name}")],
        )
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # the rich bar shows loss and lr instead
        resume_from = last_trainer_checkpoint(folder / "checkpoints") if resume else None
        if resume_from is not None:
            console.print(f"stage {stage.name}: resuming from {resume_from}")
        output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        model.eval()
        save_checkpoint(
            final, model, tokenizer, image_processor,
            chat_template={"name": template_spec.name, "options": template_spec.options},
            spec=spec_to_dict(spec), stage=stage.name, registry=registry,
        )
        registry.call_lifecycle("after_stage", stage_index=index, stage=stage, run_spec=spec,
                                checkpoint_dir=str(final))
        seconds = time.time() - started
        result.stages.append(StageResult(stage.name, final, trainer.state.global_step,
                                         output.training_loss, seconds))
        result.checkpoint = final
    latest = run_dir / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    os.symlink(os.path.relpath(result.checkpoint, run_dir), latest)
    return result
