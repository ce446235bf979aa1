"""Round trips through transformers' LLaVA layout: ours -> hf-llava -> ours gives the same weights bit for bit and
the same components; hf-llava -> ours -> hf-llava gives the same safetensors tensors. Then an imported checkpoint
trains as `init_from`."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tinyllava.checkpoint.load import load_checkpoint, read_manifest
from tinyllava.interop.export_hf_llava import export_hf_llava
from tinyllava.interop.import_checkpoint import import_checkpoint
from tinyllava.testing.tiny import TINY_MODEL, save_and_reload_tiny

SIGLIP_TOWER = {"name": "siglip", "config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
                                             "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
                "feature_layer": -2, "drop_first_patch": True}
QWEN_LLM = {"name": "qwen", "config": {"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64,
                                       "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
                                       "max_position_embeddings": 256}, "tokenizer_vocab_size": 320}
CASES = {
    "llama-clip-patch-l2": {},
    "llama-clip-cls_patch-l1-pad": {"vision_tower": {**TINY_MODEL["vision_tower"], "feature_layer": -1,
                                                     "feature_strategy": "cls_patch"}, "image_preprocess": "pad"},
    "qwen-siglip-dropfirst": {"llm": QWEN_LLM, "vision_tower": SIGLIP_TOWER},
}


def sibling(name: str) -> Any:
    """Another test module of this folder (pytest imports tests with importlib: they are not on sys.path)."""
    import importlib.util
    import sys

    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("case", sorted(CASES))
def test_ours_to_hf_llava_and_back_is_bit_identical(tmp_path: Path, case: str) -> None:
    components = copy.deepcopy(CASES[case])
    save_and_reload_tiny(tmp_path / "ours", **components)
    export_hf_llava(tmp_path / "ours", tmp_path / "hf")
    back = import_checkpoint("hf-llava", tmp_path / "hf", tmp_path / "back")

    assert_same_tensors(tensors(tmp_path / "ours" / "model.safetensors"), tensors(back / "model.safetensors"))
    before, after = read_manifest(tmp_path / "ours"), read_manifest(back)
    assert after["components"] == before["components"]
    assert after["image_preprocess"] == before["image_preprocess"]
    assert after["image_seq_len"] == before["image_seq_len"]
    assert after["imported_from"]["format"] == "hf-llava"
    original, imported = load_checkpoint(tmp_path / "ours"), load_checkpoint(back)
    assert imported.model.config.text_config["vocab_size"] == original.model.config.text_config["vocab_size"]
    assert imported.model.config.vision_config["num_hidden_layers"] == \
        original.model.config.vision_config["num_hidden_layers"]
    assert imported.tokenizer.get_vocab() == original.tokenizer.get_vocab()  # the exporter's <image> removed
    text = "USER: <image>\nWhat shape is the red one? ASSISTANT:"
    assert imported.tokenizer(text)["input_ids"] == original.tokenizer(text)["input_ids"]


def loaded_state(folder: Path) -> dict[str, torch.Tensor]:
    """The weights as transformers itself reads a LLaVA folder (key names in its own, current spelling)."""
    from transformers import LlavaForConditionalGeneration

    return LlavaForConditionalGeneration.from_pretrained(folder).state_dict()


@pytest.mark.parametrize("keys", ["t4", "save_pretrained"])
def test_hf_llava_to_ours_and_back_gives_the_same_tensors(tmp_path: Path, keys: str) -> None:
    """A transformers-made LLaVA whose tower is used to its last layer: every tensor comes back unchanged.

    The exporter writes the Hub's key names (those of transformers 4, `vision_tower.vision_model.*`): a source
    saved with them comes back file for file; one saved by transformers 5's `save_pretrained` (which leaves
    `vision_model.` out) comes back with the same tensors as transformers loads them.
    """
    Llava = sibling("test_import_hf_llava").Llava  # noqa: N806

    llava = Llava("llama", "clip", layer=-1, strategy="default")
    src = llava.save(tmp_path / "src", keys)
    ours = import_checkpoint("hf-llava", src, tmp_path / "ours")
    export_hf_llava(ours, tmp_path / "again")
    if keys == "t4":
        assert_same_tensors(tensors(src / "model.safetensors"), tensors(tmp_path / "again" / "model.safetensors"))
    assert_same_tensors(loaded_state(src), loaded_state(tmp_path / "again"))
    first = json.loads((src / "config.json").read_text())
    second = json.loads((tmp_path / "again" / "config.json").read_text())
    for key in ("vision_feature_layer", "vision_feature_select_strategy", "projector_hidden_act",
                "image_token_index", "image_seq_length", "multimodal_projector_bias"):
        assert second[key] == first[key], key
    assert second["tinyllava_export"]["appended_rows"] == 0  # the LLaVA tokenizer's own <image> is reused


def test_hf_llava_round_trip_keeps_every_used_tensor(tmp_path: Path) -> None:
    """Feature layer -2 of a SigLIP tower: the last layer and the pooling head are never used, so they are not
    imported; every other tensor comes back unchanged, and the exported model reads the same features."""
    Llava = sibling("test_import_hf_llava").Llava  # noqa: N806

    llava = Llava("qwen2", "siglip", layer=-2, strategy="default")
    src = llava.save(tmp_path / "src", "t4")  # the Hub's key names, which the exporter writes
    ours = import_checkpoint("hf-llava", src, tmp_path / "ours")
    export_hf_llava(ours, tmp_path / "again")
    first, second = tensors(src / "model.safetensors"), tensors(tmp_path / "again" / "model.safetensors")
    unused = sorted(set(first) - set(second))
    assert unused and all(".layers.2." in k or ".head." in k for k in unused)
    assert set(second) <= set(first)
    assert_same_tensors({k: first[k] for k in second}, second)


def test_imported_checkpoint_trains_as_init_from(tmp_path: Path) -> None:
    """Two steps of a LoRA-free instruct stage starting from an imported TinyLLaVA Factory checkpoint."""
    Factory = sibling("test_import_factory").Factory  # noqa: N806

    from tinyllava.spec.runspec import RunSpec
    from tinyllava.training.runner import run_training

    src = Factory("llama", "clip").save_full(tmp_path / "src")
    imported = import_checkpoint("tinyllava-factory", src, tmp_path / "imported")
    spec = RunSpec.model_validate({
        "name": "from-import", "output_dir": str(tmp_path / "runs"), "num_threads": 1, "init_from": str(imported),
        "stages": [{"name": "instruct", "recipe": "base",
                    "data": {"dataset": {"name": "shapes", "split": "instruct", "num_images": 8, "image_size": 32}},
                    "tune": {"llm": "full", "vision_tower": "frozen", "connector": "full"},
                    "lr": 1e-3, "batch_size": 4, "max_steps": 2, "logging_steps": 1, "save_steps": 100}],
    })
    result = run_training(spec)
    final = result.checkpoint
    assert (final / "model.safetensors").is_file()
    manifest = read_manifest(final)
    assert manifest["components"]["llm"]["name"] == "llama"
    before = tensors(imported / "model.safetensors")
    after = tensors(final / "model.safetensors")
    changed = [k for k in before if k.startswith("connector.") and not torch.equal(before[k], after[k])]
    assert changed  # the connector was trained
    frozen = [k for k in before if k.startswith("vision_tower.")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
