"""Tuning modes per component (frozen, full, partial, LoRA, QLoRA), their optimizer groups, adapter
checkpoints (save, reload, merge), gradient checkpointing and bf16, on the tiny model in this process."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from tinyllava.model.build import build_fresh
from tinyllava.plugins.registry import get_registry
from tinyllava.spec import SpecError, resolve_spec
from tinyllava.spec.runspec import ModelSpec, StageSpec
from tinyllava.testing import TINY_MODEL, tiny_run_spec
from tinyllava.training.parameters import TuningError, apply_tuning, default_lora_targets, parameter_table

ALL_MODES = ("frozen", "full", "partial", "lora", "qlora")


def fresh():
    torch.manual_seed(0)
    return build_fresh(get_registry(), ModelSpec.model_validate(copy.deepcopy(TINY_MODEL)))


def stage(tune: dict, **extra) -> StageSpec:
    return StageSpec.model_validate({"name": "s", "tune": tune, **extra})


def batch(model) -> dict:
    """Two rows: one with an image (its image positions spliced in), one text-only."""
    from tinyllava.constants import IMAGE_TOKEN_INDEX

    n = model.config.image_seq_len
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, 300, (2, n + 6), generator=g)
    ids[0, 1:1 + n] = IMAGE_TOKEN_INDEX
    labels = ids.masked_fill(ids == IMAGE_TOKEN_INDEX, -100)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels,
            "pixel_values": torch.randn(1, 3, 32, 32, generator=g)}


def randomize_adapters(model) -> None:
    """LoRA starts as a no-op (B = 0); give every adapter weight a value so that it shows in the outputs."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


# -- the spec -----------------------------------------------------------------------------------


def test_tune_takes_strings_or_mappings_and_dumps_compactly():
    s = stage({"llm": "full", "vision_tower": {"mode": "partial", "from_layer": -1},
               "connector": {"mode": "lora", "lora": {"r": 4}}})
    assert s.tune.llm == "full" and s.tune.llm.mode == "full"  # a string compares with the mode
    assert s.tune.vision_tower.from_layer == -1 and s.tune.connector.lora.alpha == 32.0
    dumped = s.model_dump(mode="json")["tune"]
    assert dumped["llm"] == "full" and dumped["vision_tower"] == {"mode": "partial", "from_layer": -1}
    assert StageSpec.model_validate(s.model_dump(mode="json")) == s
    q = stage({"llm": "qlora"}).tune.llm
    assert (q.quant_settings().bits, q.quant_settings().quant_type, q.quant_settings().double_quant) == (4, "nf4", True)
    assert stage({"llm": "lora"}).resolved_save_format() == "adapters"
    assert stage({"llm": "full"}).resolved_save_format() == "full"


@pytest.mark.parametrize(("tune", "expected"), [
    ({"llm": "partial"}, "stages.0.tune.llm: Value error, mode 'partial' needs from_layer"),
    ({"llm": {"mode": "full", "lora": {"r": 4}}}, "lora settings only apply to modes lora/qlora"),
    ({"llm": {"mode": "lora", "quant": {"bits": 4}}}, "quant settings only apply to mode 'qlora'"),
    ({"llm": "lorra"}, "stages.0.tune.llm.mode: Input should be 'frozen', 'full', 'partial', 'lora' or 'qlora'"),
    ({"llm": {"mode": "qlora", "quant": {"bits": 3}}}, "stages.0.tune.llm.quant.bits"),
    ({"llm": {"mode": "lora", "lora": {"target_modules": []}}}, "leave target_modules out"),
])
def test_tune_errors_name_the_field_and_the_fix(tmp_path, tune, expected):
    raw = tiny_run_spec(tmp_path)
    raw["stages"][0]["tune"] = tune
    with pytest.raises(SpecError) as err:
        resolve_spec(raw)
    assert expected in str(err.value)


def test_stages_are_checked_against_the_recipe_before_anything_is_built(tmp_path):
    from tinyllava.training.runner import RunError, check_stages

    raw = tiny_run_spec(tmp_path)
    raw["stages"][0]["tune"] = {"llm": "lora"}
    raw["stages"][1].update({"recipe": "qlora", "tune": {"llm": "qlora"}, "deepspeed": "zero3"})
    with pytest.raises(RunError) as err:
        check_stages(resolve_spec(raw), get_registry())
    msg = str(err.value)
    assert "stages.0 (align), recipe 'base': tune.llm='lora' is not supported by this recipe" in msg
    assert "stages.1 (instruct): QLoRA cannot run under ZeRO-3" in msg


# -- what trains --------------------------------------------------------------------------------


def test_frozen_full_and_partial_by_block_index():
    model = fresh().model
    apply_tuning(model, stage({"llm": {"mode": "partial", "from_layer": 1},
                               "vision_tower": {"mode": "partial", "from_layer": -1}, "connector": "frozen"}),
                 ALL_MODES)
    llm = {n for n, p in model.language_model.named_parameters() if p.requires_grad}
    assert llm and all(n.startswith("model.layers.1.") for n in llm)
    tower = {n for n, p in model.vision_tower.named_parameters() if p.requires_grad}
    # feature_layer -2 kept one of the tower's two blocks: -1 is that block
    assert tower and all(n.startswith("model.vision_model.encoder.layers.0.") or
                         n.startswith("model.encoder.layers.0.") for n in tower)
    assert not any(p.requires_grad for p in model.connector.parameters())
    with pytest.raises(TuningError, match=r"tune.vision_tower.from_layer=1 is out of range.*use 0..0"):
        apply_tuning(fresh().model, stage({"vision_tower": {"mode": "partial", "from_layer": 1}}), ALL_MODES)
    with pytest.raises(TuningError, match="connector has none"):
        apply_tuning(fresh().model, stage({"connector": {"mode": "partial", "from_layer": 0}}), ALL_MODES)


def test_lora_targets_every_linear_but_the_heads():
    model = fresh().model
    assert default_lora_targets(model.language_model) == [
        "down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert default_lora_targets(model.vision_tower) == ["fc1", "fc2", "k_proj", "out_proj", "q_proj", "v_proj"]
    apply_tuning(model, stage({"llm": "lora", "vision_tower": {"mode": "lora", "lora": {
        "r": 2, "target_modules": ["q_proj"]}}, "connector": "full"}), ALL_MODES)
    adapted = {n.rsplit(".lora_", 1)[0] for n, _ in model.named_parameters() if "lora_" in n}
    assert not any("lm_head" in n for n in adapted)
    assert {n.rsplit(".", 1)[-1] for n in adapted if n.startswith("vision_tower.")} == {"q_proj"}
    rows = {r[0]: r for r in parameter_table(model, stage({"llm": "lora"}))}
    lora = sum(p.numel() for n, p in model.language_model.named_parameters() if "lora_" in n)
    assert rows["llm"][2] == lora and rows["llm"][3] == "lora r16"
    with pytest.raises(TuningError, match="tune.llm.lora.target_modules"):
        apply_tuning(fresh().model, stage({"llm": {"mode": "lora", "lora": {"target_modules": ["nope"]}}}),
                     ALL_MODES)


@pytest.mark.parametrize("bits", [4, 8])
def test_qlora_quantises_the_frozen_linears_and_trains_adapters(bits):
    import bitsandbytes as bnb

    model = fresh().model
    apply_tuning(model, stage({"llm": {"mode": "qlora", "lora": {"r": 4}, "quant": {"bits": bits}}}), ALL_MODES)
    layer = bnb.nn.Linear4bit if bits == 4 else bnb.nn.Linear8bitLt
    base = model.language_model.get_base_model()
    assert isinstance(base.model.layers[0].self_attn.q_proj.base_layer, layer)
    assert type(base.lm_head) is torch.nn.Linear  # heads stay as they are
    assert all(p.dtype == torch.float32 for n, p in base.named_parameters() if "norm" in n)
    out = model(**batch(model))
    out.loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_optimizer_groups_hold_per_component_lrs_in_every_mode(tmp_path):
    """lr per component (lora, partial and full side by side), and no weight decay on norms and biases."""
    from transformers import TrainingArguments

    from tinyllava.training.trainer import TinyLlavaTrainer

    model = fresh().model
    s = stage({"llm": {"mode": "qlora", "lora": {"r": 4}}, "vision_tower": {"mode": "partial", "from_layer": 0},
               "connector": "full"}, lr=2e-4, weight_decay=0.1,
              component_lr={"vision_tower": 5e-5, "connector": 1e-3})
    groups = apply_tuning(model, s, ALL_MODES)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], weight_decay=0.1)
    optimizer = TinyLlavaTrainer(model=model, args=args, param_groups=groups).create_optimizer()
    by_name = {g["name"]: g for g in optimizer.param_groups}
    assert {k: v["lr"] for k, v in by_name.items()} == {
        "llm": 2e-4, "vision_tower": 5e-5, "vision_tower.no_decay": 5e-5, "connector": 1e-3,
        "connector.no_decay": 1e-3}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            norm_or_bias = "norm" in names[id(p)] or names[id(p)].endswith("bias")
            assert norm_or_bias == (group["weight_decay"] == 0.0), names[id(p)]
    grouped = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)


# -- gradient checkpointing and bf16 --------------------------------------------------------------


def test_gradient_checkpointing_gives_the_same_gradients_with_a_frozen_llm_and_with_lora():
    """Non-reentrant checkpointing: adapters inside checkpointed blocks and a connector feeding a frozen
    LLM both get their gradients (the reentrant variant silently drops them without input grads)."""
    for tune in ({"llm": "frozen", "connector": "full"},
                 {"llm": {"mode": "lora", "lora": {"r": 4, "dropout": 0.0}}, "connector": "full"}):
        model = fresh().model
        apply_tuning(model, stage(tune), ALL_MODES)
        randomize_adapters(model)
        model.train()
        inputs = batch(model)
        model(**inputs).loss.backward()
        plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        model.zero_grad(set_to_none=True)
        model.activation_checkpointing_enable()
        model(**inputs).loss.backward()
        for n, p in model.named_parameters():
            if p.requires_grad:
                assert p.grad is not None and torch.allclose(p.grad, plain[n], atol=1e-6), n


def test_bf16_and_gradient_checkpointing_stage_trains(tmp_path):
    from rich.console import Console
    from safetensors.torch import load_file

    from tinyllava.training.runner import run_training

    raw = tiny_run_spec(tmp_path / "runs", steps=2)
    raw["stages"] = raw["stages"][1:]
    raw["stages"][0].update({"tune": {"llm": "frozen", "vision_tower": "frozen", "connector": "full"},
                             "bf16": True, "gradient_checkpointing": True})
    with open(os.devnull, "w") as sink:
        result = run_training(resolve_spec(raw), console=Console(file=sink))
    assert result.stages[0].steps == 2 and result.stages[0].train_loss == result.stages[0].train_loss  # not NaN
    before = fresh().model.state_dict()
    after = load_file(result.checkpoint / "model.safetensors")
    assert all(torch.equal(after[k], before[k]) for k in after if k.startswith("language_model."))
    assert any(not torch.equal(after[k], before[k]) for k in after if k.startswith("connector."))
    assert all(v.dtype == torch.float32 for v in after.values())  # bf16 autocast; float32 master weights


# -- adapter checkpoints --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def adapter_checkpoint(tmp_path_factory):
    """A LoRA (LLM + vision tower) checkpoint with non-trivial adapters, and the logits it must reproduce."""
    from tinyllava.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("adapters")
    assembled = fresh()
    model = assembled.model
    apply_tuning(model, stage({"llm": {"mode": "lora", "lora": {"r": 4}},
                               "vision_tower": {"mode": "lora", "lora": {"r": 2}}, "connector": "full"}), ALL_MODES)
    randomize_adapters(model)
    model.eval()
    inputs = batch(model)
    expected = logits(model, inputs)
    ckpt = save_checkpoint(root / "ckpt", model, assembled.tokenizer, assembled.image_processor,
                           chat_template={"name": "llama", "options": {}}, stage="s", save_format="adapters")
    return ckpt, inputs, expected


def test_adapters_are_saved_in_peft_layout_and_reload(adapter_checkpoint):
    from peft import PeftModel

    from tinyllava.checkpoint import load_checkpoint

    ckpt, inputs, expected = adapter_checkpoint
    manifest = json.loads((ckpt / "tinyllava.json").read_text())
    assert manifest["save_format"] == "adapters" and set(manifest["adapters"]) == {"llm", "vision_tower"}
    assert manifest["adapters"]["llm"] == {"path": "adapters/llm", "type": "lora", "r": 4, "alpha": 32.0}
    config = json.loads((ckpt / "adapters" / "llm" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4
    from safetensors.torch import load_file

    base = load_file(ckpt / "model.safetensors")
    assert not any("lora_" in k or "base_layer" in k or "base_model" in k for k in base)
    loaded = load_checkpoint(ckpt)
    assert isinstance(loaded.model.language_model, PeftModel)
    assert torch.allclose(logits(loaded.model, inputs), expected, atol=1e-6)


def test_merge_command_writes_a_full_checkpoint_that_agrees(adapter_checkpoint, tmp_path):
    from typer.testing import CliRunner

    from tinyllava.checkpoint import load_checkpoint
    from tinyllava_cli.app import app

    ckpt, inputs, expected = adapter_checkpoint
    out = tmp_path / "merged"
    result = CliRunner().invoke(app, ["merge", "--model", str(ckpt), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "merged the llm, vision_tower adapter(s)" in result.output
    manifest = json.loads((out / "tinyllava.json").read_text())
    assert manifest["save_format"] == "full" and manifest["adapters"] == {} and not (out / "adapters").exists()
    assert manifest["merged_from"] == str(ckpt.resolve())
    merged = load_checkpoint(out)
    assert type(merged.model.language_model).__name__ == "LlamaForCausalLM"
    assert torch.allclose(logits(merged.model, inputs), expected, atol=1e-5)
    again = CliRunner().invoke(app, ["merge", "--model", str(ckpt), "--output", str(out)])
    assert again.exit_code == 2 and "not empty" in again.output


def test_save_format_full_merges_adapters_at_save(tmp_path):
    from tinyllava.checkpoint import load_checkpoint, save_checkpoint

    assembled = fresh()
    model = assembled.model
    apply_tuning(model, stage({"llm": {"mode": "lora", "lora": {"r": 4}}}), ALL_MODES)
    randomize_adapters(model)
    model.eval()
    inputs = batch(model)
    expected = logits(model, inputs)
    ckpt = save_checkpoint(tmp_path / "full", model, assembled.tokenizer, assembled.image_processor,
                           chat_template={"name": "llama", "options": {}}, save_format="full")
    manifest = json.loads((ckpt / "tinyllava.json").read_text())
    assert manifest["save_format"] == "full" and manifest["merged_adapters"] == ["llm"]
    assert "merged_from" not in manifest and not (ckpt / "adapters").exists()
    assert torch.allclose(logits(load_checkpoint(ckpt).model, inputs), expected, atol=1e-5)


@pytest.mark.parametrize("bits", [4, 8])
def test_qlora_checkpoint_stores_the_weights_the_quantised_model_computed_with(bits, tmp_path):
    from peft.utils.integrations import dequantize_module_weight
    from safetensors.torch import load_file

    from tinyllava.checkpoint import load_checkpoint, save_checkpoint

    assembled = fresh()
    model = assembled.model
    apply_tuning(model, stage({"llm": {"mode": "qlora", "lora": {"r": 4, "dropout": 0.0},
                                       "quant": {"bits": bits}}}), ALL_MODES)
    randomize_adapters(model)
    q_proj = model.language_model.get_base_model().model.layers[0].self_attn.q_proj.base_layer
    dequantized = dequantize_module_weight(q_proj).float()
    model.train()  # bitsandbytes' CPU inference path repacks 4-bit weights in place; train mode computes plainly
    inputs = batch(model)
    expected = logits(model, inputs)
    ckpt = save_checkpoint(tmp_path / "q", model, assembled.tokenizer, assembled.image_processor,
                           chat_template={"name": "llama", "options": {}}, save_format="adapters")
    base = load_file(ckpt / "model.safetensors")
    assert torch.equal(base["language_model.model.layers.0.self_attn.q_proj.weight"], dequantized)
    assert not any(k.endswith((".absmax", ".SCB", ".weight_format")) or "quant" in k for k in base)
    if bits == 4:  # the 4-bit matmul is the float matmul with the dequantised weight; int8 also rounds inputs
        assert torch.allclose(logits(load_checkpoint(ckpt).model, inputs), expected, atol=1e-5)


# -- DeepSpeed configs and multi-process helpers -------------------------------------------------


def test_deepspeed_config_files_are_the_built_in_ones(tmp_path):
    from tinyllava.training.distributed import DEEPSPEED_CONFIGS, DeepSpeedConfigError, deepspeed_config

    folder = Path(__file__).resolve().parent.parent / "configs" / "deepspeed"
    for name, config in DEEPSPEED_CONFIGS.items():
        assert json.loads((folder / f"{name}.json").read_text()) == config, name
        assert deepspeed_config(str(folder / f"{name}.json")) == deepspeed_config(name)
    custom = tmp_path / "ds.json"
    custom.write_text(json.dumps({"zero_optimization": {"stage": 2}, "optimizer": {"type": "AdamW"}}))
    with pytest.raises(DeepSpeedConfigError, match="remove the 'optimizer' section"):
        deepspeed_config(str(custom), "stages.0.deepspeed")
    with pytest.raises(DeepSpeedConfigError, match="stages.0.deepspeed: 'zero4' is neither a built-in config"):
        deepspeed_config("zero4", "stages.0.deepspeed")


def test_parameters_that_get_no_gradient_are_found_and_frozen():
    from tinyllava.training.runner import freeze_unreachable

    model = fresh().model
    apply_tuning(model, stage({"vision_tower": "full", "connector": "full"}), ALL_MODES)
    state = torch.random.get_rng_state()
    unreached = freeze_unreachable(model, batch(model))
    assert torch.equal(state, torch.random.get_rng_state())
    # CLIP's final norm only feeds the pooled output, which feature selection never uses
    assert unreached and all("post_layernorm" in n for n in unreached)
    assert not any(p.requires_grad for n, p in model.named_parameters() if n in unreached)
    assert all(p.grad is None for p in model.parameters())


# -- custom finetune from a trained checkpoint ----------------------------------------------------


def test_custom_finetune_starts_from_a_checkpoint_and_stacks_adapters(adapter_checkpoint, tmp_path):
    from rich.console import Console
    from safetensors.torch import load_file

    from tinyllava.checkpoint import load_checkpoint
    from tinyllava.training.runner import run_training

    ckpt, _, _ = adapter_checkpoint
    data = {"dataset": {"name": "shapes", "split": "instruct", "num_images": 8, "image_size": 32}}
    raw = {"name": "custom", "output_dir": str(tmp_path / "runs"), "init_from": str(ckpt), "num_threads": 1,
           "recipe": {"name": "custom_finetune", "r": 4, "alpha": 8, "data": data},
           "stages": []}
    raw.pop("stages")
    spec_file = tmp_path / "custom.yaml"
    spec_file.write_text(yaml.safe_dump(raw))
    from tinyllava.spec import load_spec

    spec = load_spec(spec_file, ["stages.0.max_steps=2", "stages.0.batch_size=2", "stages.0.grad_accum=1"])
    with open(os.devnull, "w") as sink:
        result = run_training(spec, console=Console(file=sink))
    final = result.checkpoint
    manifest = json.loads((final / "tinyllava.json").read_text())
    assert set(manifest["adapters"]) == {"llm"} and manifest["components"]["chat_template"]["name"] == "llama"
    start = load_checkpoint(ckpt, merge_adapters=True).model.state_dict()  # the init's adapters, merged first
    base = load_file(final / "model.safetensors")
    tower = [k for k in base if k.startswith("vision_tower.")]
    assert tower and all(torch.equal(base[k], start[k]) for k in tower)
    assert load_checkpoint(final).model is not None
