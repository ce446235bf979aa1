"""Launch-time patches that let TinyLLaVA Factory (main @53f12c7) run unchanged on Python 3.11, CPU, one process.

Nothing of the original is copied or edited: `install(src)` puts the checkout (and `stubs/`) on `sys.path` and
registers post-import hooks that adjust three of its modules right after they execute:

1. `tinyllava.data.template.formatter`: the chat templates are dataclasses whose field defaults are `Formatter`
   dataclass instances (`format_user: Formatter = StringFormatter(slot=...)`). Python 3.11 rejects any default whose
   class is unhashable ("mutable default <class 'StringFormatter'> for field format_image_token is not allowed:
   use default_factory"); 3.9/3.10, which the original targets, only rejected list/dict/set. Giving the
   formatter classes identity hashing restores the 3.9/3.10 behaviour: the default instance is shared, as it was.
2. `tinyllava.utils.logging`: `log()` and `print_rank0()` call `torch.distributed.get_rank()`, which raises unless
   a process group exists (the original is always launched by `deepspeed`). The module's `dist` becomes a proxy
   whose `get_rank()` is 0 when no process group is initialised.
3. `tinyllava.training_recipe.lora_recipe`: `training_model_converse` tests `model.peft_config is None`, an
   attribute a fresh `TinyLlavaForConditionalGeneration` does not have (upstream issue #142; fix PR #143 unmerged),
   so every LoRA run dies with AttributeError. The patch gives the model `peft_config = None` for that test and
   takes it away again just before `get_peft_model` (peft would otherwise find the attribute and try to add its
   adapter config to None) -- the behaviour PR #143 intends.

`stubs/deepspeed` stands in for DeepSpeed, which `tinyllava/utils/train_utils.py` imports at module level.
"""

from __future__ import annotations

import dataclasses
import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
STUBS = HERE / "stubs"
APPLIED: list[str] = []  # which patches ran, for the result JSON


def check_checkout(src: str | os.PathLike) -> Path:
    src = Path(src).expanduser().resolve()
    if not (src / "tinyllava" / "train" / "train.py").is_file():
        raise SystemExit(f"--src {src}: not a TinyLLaVA Factory checkout (no tinyllava/train/train.py)")
    return src


def offline_env(threads: int) -> dict[str, str]:
    """Environment for a measured process: fixed thread count, no Hub look-ups, no tokenizer threads."""
    return {
        "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1", "WANDB_DISABLED": "true", "PYTHONUNBUFFERED": "1",
    }


def compat_clip(source: Path, cache: Path) -> Path:
    """The workload's CLIP tower re-keyed for transformers 4.40 (made once; returns its folder).

    The bench generator saves `CLIPVisionModel` with transformers 5.x, whose state-dict keys lack the
    `vision_model.` prefix that 4.40's `CLIPVisionModel` expects; 4.40 then ignores every tensor and silently
    leaves the tower randomly initialised (and differently each run). The copy holds the same tensors under
    4.40's names plus the same config.json and preprocessor_config.json. Its folder name keeps 'clip' (the
    original picks the vision plugin by substring of this path). The LLM needs no such copy: 4.40 loads the
    tinyllama-tiny folder as it is.
    """
    import shutil

    from safetensors.torch import load_file, save_file

    out = cache / source.name
    weights = out / "model.safetensors"
    if weights.is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    tensors = load_file(str(source / "model.safetensors"))
    renamed = {(k if k.startswith("vision_model.") else "vision_model." + k): v for k, v in tensors.items()}
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copyfile(source / name, out / name)
    tmp = out / "model.safetensors.tmp"
    save_file(renamed, str(tmp), metadata={"format": "pt"})
    tmp.rename(weights)
    return out


# -- post-import hooks ---------------------------------------------------------------------------------------------


class _HookedLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, hook: Callable[[ModuleType], None]) -> None:
        self._loader, self._hook = loader, hook

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._hook(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, ... for tracebacks and inspect
        return getattr(self._loader, name)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    def __init__(self, hooks: dict[str, Callable[[ModuleType], None]]) -> None:
        self.hooks = hooks

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        hook = self.hooks.get(fullname)
        if hook is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _HookedLoader(spec.loader, hook)
                return spec
        return None


def _patch_formatter(module: ModuleType) -> None:
    for value in list(vars(module).values()):
        if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__hash__ is None:
            value.__hash__ = object.__hash__  # type: ignore[method-assign]
    APPLIED.append("formatter-identity-hash")


class _DistProxy:
    """`torch.distributed` with a `get_rank()` that answers 0 when no process group exists."""

    def __init__(self, dist: Any) -> None:
        self._dist = dist

    def get_rank(self, *args: Any, **kwargs: Any) -> int:
        if self._dist.is_available() and self._dist.is_initialized():
            return self._dist.get_rank(*args, **kwargs)
        return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dist, name)


def _patch_logging(module: ModuleType) -> None:
    module.dist = _DistProxy(module.dist)
    APPLIED.append("logging-rank0-without-process-group")


def _patch_lora_recipe(module: ModuleType) -> None:
    recipe = module.LoRATrainingRecipe
    converse = recipe.training_model_converse
    real_get_peft_model = module.get_peft_model

    def training_model_converse(self: Any, model: Any) -> Any:
        if not hasattr(model, "peft_config"):
            model.peft_config = None  # what `if model.peft_config is None` expects of a model without adapters
        return converse(self, model)

    def get_peft_model(model: Any, *args: Any, **kwargs: Any) -> Any:
        if "peft_config" in vars(model) and vars(model)["peft_config"] is None:
            del model.peft_config  # peft adds its own dict; an existing None would break it
        return real_get_peft_model(model, *args, **kwargs)

    recipe.training_model_converse = training_model_converse
    module.get_peft_model = get_peft_model
    APPLIED.append("lora-peft_config-pr143")


HOOKS = {
    "tinyllava.data.template.formatter": _patch_formatter,
    "tinyllava.utils.logging": _patch_logging,
    "tinyllava.training_recipe.lora_recipe": _patch_lora_recipe,
}


def install(src: str | os.PathLike) -> Path:
    """Make `import tinyllava` load the checkout at `src`, with the patches above and the DeepSpeed stub."""
    src = check_checkout(src)
    if "tinyllava" in sys.modules:
        raise RuntimeError("tinyllava was imported before the shims were installed")
    for path in (str(STUBS), str(src)):
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)  # src first, then the stubs
    if not any(isinstance(f, _PostImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PostImportFinder(HOOKS))
    return src
