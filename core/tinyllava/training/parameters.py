"""Which parameters train in a stage, per component, and the optimizer groups that go with them.

Modes per component (llm, vision_tower, connector): frozen, full, partial (the blocks from
`from_layer` on), lora (PEFT adapters on the frozen component) and qlora (the frozen Linear layers
quantised with bitsandbytes first). Every mode keeps its component's learning rate, and norms and
biases never get weight decay.
"""

from __future__ import annotations

from typing import Any

from torch import nn

COMPONENTS = ("llm", "vision_tower", "connector")
MODULE_ATTR = {"llm": "language_model", "vision_tower": "vision_tower", "connector": "connector"}


class TuningError(ValueError):
    """A stage's tune settings cannot be applied to this model; the message names the field and the fix."""


def component_module(model: nn.Module, component: str) -> nn.Module:
    return getattr(model, MODULE_ATTR[component])


def set_component_module(model: nn.Module, component: str, module: nn.Module) -> None:
    setattr(model, MODULE_ATTR[component], module)


def no_decay_names(module: nn.Module) -> set[str]:
    """Parameter names (relative to module) of biases and of every normalisation layer."""
    names: set[str] = set()
    for mod_name, mod in module.named_modules():
        is_norm = isinstance(mod, (nn.LayerNorm, nn.GroupNorm)) or "norm" in type(mod).__name__.lower()
        for p_name, _ in mod.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if is_norm or p_name.endswith("bias"):
                names.add(full)
    return names


# -- checks that need no model ------------------------------------------------------------------


def mode_problems(stage: Any, allowed_modes: tuple[str, ...], where: str = "") -> list[str]:
    """One line per component whose mode the recipe does not accept, plus an all-frozen stage."""
    where = where or f"stage {stage.name!r}"
    problems = []
    for component in COMPONENTS:
        mode = stage.tune.of(component).mode
        if mode not in allowed_modes:
            problems.append(
                f"{where}: tune.{component}={mode!r} is not supported by this recipe; "
                f"use one of {', '.join(allowed_modes)} (or a recipe that accepts {mode!r})"
            )
    if not any(stage.tune.of(c).trains for c in COMPONENTS):
        problems.append(f"{where}: every component is frozen; nothing would train")
    return problems


# -- layers, heads and LoRA targets -------------------------------------------------------------


def find_layers(module: nn.Module) -> nn.ModuleList | None:
    """The component's stack of blocks: its largest nn.ModuleList (ties: the one with more parameters).

    A component module may name its blocks itself with a `tunable_layers()` method.
    """
    own = getattr(module, "tunable_layers", None)
    if callable(own):
        return own()
    best: tuple[int, int] | None = None
    found = None
    for _, child in module.named_modules():
        if isinstance(child, nn.ModuleList) and len(child) > 0:
            key = (len(child), sum(p.numel() for p in child.parameters()))
            if best is None or key > best:
                best, found = key, child
    return found


def _head_names(module: nn.Module) -> set[str]:
    """Names of output heads: any module whose dotted name has a part containing 'head', and the LM head."""
    heads = {name for name, _ in module.named_modules() if any("head" in part for part in name.split("."))}
    get_out = getattr(module, "get_output_embeddings", None)
    out = get_out() if callable(get_out) else None
    if out is not None:
        heads |= {name for name, mod in module.named_modules() if mod is out}
    return heads


def linear_names(module: nn.Module) -> tuple[list[str], list[str]]:
    """(adaptable, excluded) dotted names of the Linear layers of a component; heads are excluded."""
    heads = _head_names(module)
    keep, skip = [], []
    for name, mod in module.named_modules():
        if isinstance(mod, nn.Linear):
            (skip if name in heads else keep).append(name)
    return keep, skip


def default_lora_targets(module: nn.Module) -> list[str]:
    """Every Linear of the component except heads, as leaf names when they are unambiguous, else full names."""
    keep, skip = linear_names(module)
    leaves = sorted({n.rsplit(".", 1)[-1] for n in keep})
    if {n.rsplit(".", 1)[-1] for n in skip} & set(leaves):
        return keep  # a head shares a leaf name with a block layer: name each layer in full
    return leaves


# -- quantisation (QLoRA) -----------------------------------------------------------------------


def _torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def quantize_linears(module: nn.Module, quant: Any, compute_dtype: Any, device: Any) -> int:
    """Swap the component's Linear layers (heads excepted) for bitsandbytes 4-bit or 8-bit ones, in place.

    The weights are quantised from the current values when moved to `device`. Returns the number swapped.
    """
    import bitsandbytes as bnb

    heads = _head_names(module)
    swapped = 0
    for parent_name, parent in list(module.named_modules()):
        for child_name, child in list(parent.named_children()):
            full = f"{parent_name}.{child_name}" if parent_name else child_name
            if type(child) is not nn.Linear or full in heads:
                continue
            has_bias = child.bias is not None
            if quant.bits == 4:
                new: nn.Module = bnb.nn.Linear4bit(
                    child.in_features, child.out_features, bias=has_bias, compute_dtype=compute_dtype,
                    compress_statistics=quant.double_quant, quant_type=quant.quant_type, device="meta",
                )
                new.weight = bnb.nn.Params4bit(
                    child.weight.data, requires_grad=False, compress_statistics=quant.double_quant,
                    quant_type=quant.quant_type, module=new,
                )
            else:
                new = bnb.nn.Linear8bitLt(
                    child.in_features, child.out_features, bias=has_bias, has_fp16_weights=False, threshold=6.0,
                    device="meta",
                )
                new.weight = bnb.nn.Int8Params(child.weight.data, requires_grad=False, has_fp16_weights=False)
            if has_bias:
                new.bias = nn.Parameter(child.bias.data, requires_grad=False)
            setattr(parent, child_name, new.to(device))
            swapped += 1
    return swapped


def quantized_numel(param: Any) -> int:
    """The real element count of a parameter: 4-bit weights are stored packed, two per byte."""
    state = getattr(param, "quant_state", None)
    if state is not None and getattr(state, "shape", None) is not None:
        n = 1
        for d in state.shape:
            n *= int(d)
        return n
    return int(getattr(param, "ds_numel", 0) or param.numel())


# -- applying a stage ---------------------------------------------------------------------------


def _training_device() -> Any:
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def peft_ready(module: nn.Module) -> nn.Module:
    """PEFT treats any module whose `config` has a model_type as a transformers model and reads its
    `base_model_prefix`; a wrapper such as a vision encoder gets a neutral one."""
    if hasattr(getattr(module, "config", None), "model_type") and not hasattr(module, "base_model_prefix"):
        module.base_model_prefix = ""
    return module


def _add_lora(module: nn.Module, component: str, settings: Any, where: str) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    targets = settings.target_modules or default_lora_targets(module)
    if not targets:
        raise TuningError(f"{where}.lora: the {component} has no Linear layer to adapt; use mode full or frozen")
    config = LoraConfig(
        r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=targets,
        bias="none", task_type="CAUSAL_LM" if component == "llm" else None,
    )
    try:
        return get_peft_model(peft_ready(module), config)
    except ValueError as exc:
        raise TuningError(f"{where}.lora.target_modules: {exc}") from None


def _tune_component(model: nn.Module, component: str, tune: Any, stage: Any) -> None:
    where = f"stage {stage.name!r}: tune.{component}"
    module = component_module(model, component)
    if tune.mode == "qlora":
        from peft import prepare_model_for_kbit_training

        quant = tune.quant_settings()
        compute = quant.compute_dtype or ("bfloat16" if stage.bf16 else "float32")
        if not quantize_linears(module, quant, _torch_dtype(compute), _training_device()):
            raise TuningError(f"{where}: the {component} has no Linear layer to quantise; use mode lora")
        # freezes the component and keeps its norms and embeddings in float32; checkpointing is the stage's choice
        module = prepare_model_for_kbit_training(module, use_gradient_checkpointing=False)
    module.requires_grad_(tune.mode == "full")
    if tune.mode == "partial":
        layers = find_layers(module)
        if layers is None:
            raise TuningError(f"{where}: partial needs a stack of blocks (an nn.ModuleList) and the {component} "
                              f"has none; use full or lora")
        count = len(layers)
        start = tune.from_layer if tune.from_layer >= 0 else count + tune.from_layer
        if not 0 <= start < count:
            raise TuningError(f"{where}.from_layer={tune.from_layer} is out of range: the {component} has {count} "
                              f"block(s) here (a vision tower keeps only those up to its feature_layer); "
                              f"use 0..{count - 1} or -{count}..-1")
        for layer in list(layers)[start:]:
            layer.requires_grad_(True)
    if tune.is_adapter:
        set_component_module(model, component, _add_lora(module, component, tune.lora_settings(), where))


def apply_tuning(model: nn.Module, stage: Any, allowed_modes: tuple[str, ...] = ("frozen", "full")) -> list[dict]:
    """Set what trains (wrapping adapter components in PEFT, quantising qlora ones) and return optimizer groups."""
    problems = mode_problems(stage, allowed_modes)
    if problems:
        raise TuningError("; ".join(problems))
    for component in COMPONENTS:
        _tune_component(model, component, stage.tune.of(component), stage)
    return parameter_groups(model, stage)


def parameter_groups(model: nn.Module, stage: Any) -> list[dict[str, Any]]:
    """Per component: a decay group and a no-decay group (norms, biases), both at the component's lr."""
    groups: list[dict[str, Any]] = []
    for component in COMPONENTS:
        module = component_module(model, component)
        lr = getattr(stage.component_lr, component) or stage.lr
        skip = no_decay_names(module)
        decay = [p for n, p in module.named_parameters() if p.requires_grad and n not in skip]
        no_decay = [p for n, p in module.named_parameters() if p.requires_grad and n in skip]
        if decay:
            groups.append({"params": decay, "lr": lr, "weight_decay": stage.weight_decay, "name": component})
        if no_decay:
            groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": f"{component}.no_decay"})
    if not groups:
        raise TuningError(f"stage {stage.name!r}: no parameter is trainable; nothing would train")
    return groups


def prune_groups(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop parameters that were frozen after the groups were built (and groups left empty)."""
    out = []
    for group in groups:
        params = [p for p in group["params"] if p.requires_grad]
        if params:
            out.append({**group, "params": params})
    return out


def cast_frozen(model: nn.Module, dtype: Any, skip: tuple[str, ...] = ()) -> dict[Any, Any]:
    """Cast every frozen float parameter to `dtype` (the stage's compute dtype); returns {param: original}.

    Under autocast a frozen fp32 weight is cast again at every use (and again in a checkpointed
    recompute): autocast caches only the casts of weights that train. Trainable parameters stay in
    their dtype (the optimizer's master weights). Components named in `skip` (QLoRA ones, whose norms
    peft keeps in float32 on purpose) are left alone. The originals are kept (in host memory) so that
    `restore_frozen` puts back exactly the weights the stage started with: a frozen weight never changes.
    """
    import torch

    skipped: set[int] = set()
    for component in skip:
        skipped |= {id(p) for p in component_module(model, component).parameters()}
    originals: dict[Any, Any] = {}
    for param in model.parameters():
        if (param.requires_grad or id(param) in skipped or not param.is_floating_point() or param.dtype == dtype
                or param.dtype not in (torch.float32, torch.float64)):
            continue
        original = param.data
        param.data = original.to(dtype)
        originals[param] = original.cpu()  # the same tensor on the CPU; a copy off an accelerator
    return originals


def restore_frozen(originals: dict[Any, Any]) -> None:
    """Put back the weights `cast_frozen` replaced, bit for bit."""
    for param, original in originals.items():
        param.data = original.to(param.device)


def parameter_table(model: nn.Module, stage: Any) -> list[tuple[str, int, int, str]]:
    """(component, total, trainable, mode) rows with real element counts.

    ZeRO-3 partitioned parameters count by `ds_numel`, 4-bit weights by their unpacked shape.
    """
    rows = []
    for component in COMPONENTS:
        module = component_module(model, component)
        total = trainable = 0
        for p in module.parameters():
            n = quantized_numel(p)
            total += n
            trainable += n if p.requires_grad else 0
        rows.append((component, total, trainable, stage.tune.of(component).describe()))
    return rows
