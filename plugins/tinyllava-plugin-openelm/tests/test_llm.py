"""The `openelm` LLM component through the public plugin path: options, tokenizer quirks, template pairing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tinyllava.plugins.registry import get_registry
from tinyllava.testing import save_and_reload_tiny
from tinyllava.testing.conformance import LLMConformance, heavy_imports_after

TINY = {
    "model_dim": 32, "head_dim": 8, "num_transformer_layers": 2, "num_gqa_groups": 2,
    "qkv_multipliers": [0.5, 1.0], "ffn_multipliers": [0.5, 4.0], "ffn_dim_divisor": 16,
    "normalize_qk_projections": True, "share_input_output_layers": True,
}
OPTIONS = {"config": TINY, "tokenizer_vocab_size": 300}


class TestOpenELMConformance(LLMConformance):
    name = "openelm"
    options = OPTIONS

    def pretrained_component(self, folder: str) -> Any:
        """OpenELM loads its tokenizer separately: `tokenizer` is required next to `source`."""
        return get_registry().create(self.kind, self.name, {"source": folder, "tokenizer": folder})


def test_source_without_tokenizer_is_a_clear_error():
    from pydantic import ValidationError

    cls = get_registry().component_class("llm", "openelm")
    with pytest.raises(ValidationError, match="OpenELM checkpoints ship no tokenizer: give `tokenizer`"):
        cls.Options.model_validate({"source": "apple/OpenELM-450M-Instruct"})
    with pytest.raises(ValidationError, match="exactly one of"):
        cls.Options.model_validate({})
    with pytest.raises(ValidationError, match="exactly one of"):
        cls.Options.model_validate({"source": "x", "tokenizer": "y", "config": {}})


def test_random_build_uses_llama_special_ids_and_pad_is_unk():
    llm = get_registry().create("llm", "openelm", OPTIONS)
    model, tok = llm.build()
    tok = llm.prepare_tokenizer(tok)
    # Llama 2's layout, which OpenELM was trained with: <unk> 0, <s> 1, </s> 2; pad = unk
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert tok.pad_token == "<unk>" and tok.pad_token_id == 0
    assert model.config.model_type == "openelm" and model.config.vocab_size == len(tok) == 300
    assert model.config.pad_token_id == 0 and model.config._attn_implementation == "sdpa"


def test_prepare_tokenizer_sets_pad_to_unk_when_missing():
    from tinyllava.kits.tokenizers import build_byte_tokenizer

    llm = get_registry().create("llm", "openelm", OPTIONS)
    tok = build_byte_tokenizer(["hello world"], 300)
    tok.pad_token = None
    assert llm.prepare_tokenizer(tok).pad_token == "<unk>"


def test_pairs_with_the_llama_template():
    from tinyllava.constants import IGNORE_INDEX

    llm = get_registry().create("llm", "openelm", OPTIONS)
    _, tok = llm.build()
    template = get_registry().create("chat_template", "llama", {})
    template.check_tokenizer(tok)
    conv = [{"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "A cat."}]
    enc = template.encode(conv, llm.prepare_tokenizer(tok))
    assert enc.input_ids[0] == tok.bos_token_id and enc.input_ids[-1] == tok.eos_token_id
    assert tok.decode([t for t, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != IGNORE_INDEX]) == (
        " A cat.</s>"
    )


def test_pretrained_folder_loads_with_options(tmp_path):
    import torch

    llm = get_registry().create("llm", "openelm", {**OPTIONS, "dtype": "float32"})
    model, tok = llm.build()
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "tok")
    again = get_registry().create("llm", "openelm", {
        "source": str(tmp_path / "model"), "tokenizer": str(tmp_path / "tok"), "dtype": "bfloat16",
        "attn_implementation": "eager",
    })
    model2, tok2 = again.build()
    assert model2.dtype == torch.bfloat16 and model2.config._attn_implementation == "eager"
    assert tok2.eos_token == "</s>"


def test_a_folder_of_another_family_is_refused_before_loading_weights(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 32}))
    llm = get_registry().create("llm", "openelm", {"source": str(tmp_path), "tokenizer": str(tmp_path)})
    with pytest.raises(ValueError, match="llm 'openelm' loads model_type 'openelm'.*'llama'"):
        llm.build()


def test_from_config_rebuilds_the_architecture_from_a_saved_text_config():
    llm = get_registry().create("llm", "openelm", OPTIONS)
    model, _ = llm.build()
    text_config = json.loads(json.dumps(model.config.to_dict()))
    skeleton = llm.from_config(text_config)
    assert type(skeleton).__name__ == "OpenELMForCausalLM"
    assert skeleton.config.num_query_heads == model.config.num_query_heads == [2, 4]
    assert {k: v.shape for k, v in skeleton.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="cannot rebuild a model_type 'llama'"):
        llm.from_config({**text_config, "model_type": "llama"})


def test_modeling_module_registers_the_auto_classes():
    import tinyllava_plugin_openelm.modeling_openelm as modeling
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("openelm", **TINY)
    assert type(config) is modeling.OpenELMConfig
    assert type(AutoModelForCausalLM.from_config(config)) is modeling.OpenELMForCausalLM


def test_component_module_is_import_light():
    """Listing, validating and schema generation load the llm module; that must not load torch or transformers."""
    assert heavy_imports_after("import tinyllava_plugin_openelm.llm as m\n"
                               "m.OpenELMLLM.Options.model_json_schema()\n"
                               "m.OpenELMLLM.Options.model_validate({'config': {}})") == []


def test_tinyllava_checkpoint_save_and_load_through_the_core(tmp_path):
    """The assembled LLaVA model with OpenELM saves and reloads (text config -> from_config) to the same logits."""
    import torch

    built, loaded = save_and_reload_tiny(tmp_path, llm={"name": "openelm", **OPTIONS})
    assert type(loaded.model.language_model).__name__ == "OpenELMForCausalLM"
    ids = torch.tensor([built.tokenizer("What shape is the", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        expected = built.model.eval()(input_ids=ids).logits
        assert torch.allclose(loaded.model.eval()(input_ids=ids).logits, expected, atol=1e-6)
