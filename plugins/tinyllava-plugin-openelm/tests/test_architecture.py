"""OpenELM's architecture as implemented here: layer-wise scaling, released key names, numerics, cache, training."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tinyllava_plugin_openelm.configuration_openelm import OpenELMConfig, make_divisible
from tinyllava_plugin_openelm.modeling_openelm import OpenELMForCausalLM

# A small config whose layers differ. Worked by hand:
#   qkv: linspace(0.5, 1.0, 3) = [0.5, 0.75, 1.0]; query width = make_divisible(64 * m, 8 * 2 = 16)
#     64*0.5  = 32 -> int(32 + 8) // 16 * 16 = 32 -> 32 / 8 = 4 query heads, 4 / 2 = 2 kv heads
#     64*0.75 = 48 -> int(48 + 8) // 16 * 16 = 48 -> 6 query heads, 3 kv heads
#     64*1.0  = 64 -> int(64 + 8) // 16 * 16 = 64 -> 8 query heads, 4 kv heads
#   ffn: linspace(0.5, 4.0, 3) = [0.5, 2.25, 4.0]; width = make_divisible(m * 64, 32)
#     32  -> int(32 + 16) // 32 * 32 = 32
#     144 -> int(144 + 16) // 32 * 32 = 160 (160 >= 0.9 * 144, no correction)
#     256 -> int(256 + 16) // 32 * 32 = 256
#   so qkv_proj has (q + 2 kv) * 8 = 64, 96, 128 rows; out_proj 32, 48, 64 columns;
#   proj_1 (GLU: gate | up) 64, 320, 512 rows; proj_2 32, 160, 256 columns.
TINY = {
    "vocab_size": 300, "model_dim": 64, "head_dim": 8, "num_transformer_layers": 3, "num_gqa_groups": 2,
    "qkv_multipliers": [0.5, 1.0], "ffn_multipliers": [0.5, 4.0], "ffn_dim_divisor": 32,
    "normalize_qk_projections": True, "share_input_output_layers": True, "bos_token_id": 1, "eos_token_id": 2,
}
EXPECTED_SHAPES = {
    "transformer.token_embeddings.weight": (300, 64),
    "transformer.norm.weight": (64,),
    **{
        k: v
        for i, (q, kv, ffn) in enumerate([(4, 2, 32), (6, 3, 160), (8, 4, 256)])
        for k, v in {
            f"transformer.layers.{i}.attn_norm.weight": (64,),
            f"transformer.layers.{i}.attn.qkv_proj.weight": ((q + 2 * kv) * 8, 64),
            f"transformer.layers.{i}.attn.q_norm.weight": (8,),
            f"transformer.layers.{i}.attn.k_norm.weight": (8,),
            f"transformer.layers.{i}.attn.out_proj.weight": (64, q * 8),
            f"transformer.layers.{i}.ffn_norm.weight": (64,),
            f"transformer.layers.{i}.ffn.proj_1.weight": (2 * ffn, 64),
            f"transformer.layers.{i}.ffn.proj_2.weight": (64, ffn),
        }.items()
    },
}

# The published config of OpenELM-1_1B(-Instruct) (as mirrored by mlx-community), per-layer fields verbatim.
RELEASED_1_1B = {
    "activation_fn_name": "swish", "architectures": ["OpenELMForCausalLM"],
    "auto_map": {"AutoConfig": "configuration_openelm.OpenELMConfig",
                 "AutoModelForCausalLM": "modeling_openelm.OpenELMForCausalLM"},
    "bos_token_id": 1, "eos_token_id": 2, "ffn_dim_divisor": 256,
    "ffn_multipliers": [0.5, 0.63, 0.76, 0.89, 1.02, 1.15, 1.28, 1.41, 1.54, 1.67, 1.8, 1.93, 2.06, 2.19, 2.31,
                        2.44, 2.57, 2.7, 2.83, 2.96, 3.09, 3.22, 3.35, 3.48, 3.61, 3.74, 3.87, 4.0],
    "ffn_with_glu": True, "head_dim": 64, "initializer_range": 0.02, "max_context_length": 2048,
    "model_dim": 2048, "model_type": "openelm", "normalization_layer_name": "rms_norm",
    "normalize_qk_projections": True, "num_gqa_groups": 4,
    "num_kv_heads": [4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 8, 8, 8, 8],
    "num_query_heads": [16, 16, 16, 20, 20, 20, 20, 20, 20, 20, 24, 24, 24, 24, 24, 24, 24, 24, 28, 28, 28, 28,
                        28, 28, 32, 32, 32, 32],
    "num_transformer_layers": 28, "qkv_multipliers": [0.5, 1.0], "rope_freq_constant": 10000,
    "rope_max_length": 4096, "share_input_output_layers": True, "torch_dtype": "bfloat16",
    "transformers_version": "4.39.3", "use_cache": True, "vocab_size": 32000,
}


def tiny_model(seed: int = 0, attn: str = "sdpa", **overrides) -> OpenELMForCausalLM:
    torch.manual_seed(seed)
    config = OpenELMConfig(**{**TINY, **overrides})
    config._attn_implementation = attn
    return OpenELMForCausalLM(config).eval()


def released_style_config(config: OpenELMConfig) -> dict:
    """The config.json a released checkpoint would carry for `config`: its field names, auto_map, old dtype key."""
    fields = {k: v for k, v in config.to_dict().items() if k in RELEASED_1_1B}
    return {**fields, "architectures": ["OpenELMForCausalLM"], "auto_map": RELEASED_1_1B["auto_map"],
            "torch_dtype": "float32", "transformers_version": "4.39.3"}


IDS = torch.tensor([[1, 5, 17, 42, 9, 250, 33, 7]])


# -- layer-wise scaling ------------------------------------------------------------------------------


def test_make_divisible_rounds_to_nearest_with_floor_and_ten_percent_rule():
    assert make_divisible(1024, 256) == 1024
    assert make_divisible(1100, 256) == 1024  # nearest multiple
    assert make_divisible(1290.24, 256) == 1280
    assert make_divisible(100, 256) == 256  # never below the divisor
    assert make_divisible(600, 256) == 768  # 512 would lose more than 10% of 600
    assert make_divisible(40, 32) == 64  # same rule: 32 < 0.9 * 40


def test_per_layer_heads_and_ffn_widths_follow_the_scaling_formulas():
    model = tiny_model()
    config = model.config
    assert config.num_query_heads == [4, 6, 8]
    assert config.num_kv_heads == [2, 3, 4]
    assert config.ffn_multipliers == [0.5, 2.25, 4.0]
    assert config.ffn_dims == [32, 160, 256]
    for layer, q, kv, ffn in zip(model.transformer.layers, [4, 6, 8], [2, 3, 4], [32, 160, 256], strict=True):
        assert (layer.attn.num_q_heads, layer.attn.num_kv_heads, layer.attn.num_key_value_groups) == (q, kv, 2)
        assert layer.ffn.intermediate_dim == ffn


def test_uniform_multipliers_and_explicit_per_layer_ffn_list():
    config = OpenELMConfig(**{**TINY, "qkv_multipliers": 1.0, "ffn_multipliers": [1.0, 0.625, 3.0]})
    assert config.num_query_heads == [8, 8, 8] and config.num_kv_heads == [4, 4, 4]
    assert config.ffn_dims == [64, 64, 192]  # 0.625 * 64 = 40 -> 64 by the 10% rule


def test_the_released_1_1b_per_layer_lists_are_reproduced():
    fields = {k: v for k, v in RELEASED_1_1B.items() if k not in ("num_query_heads", "num_kv_heads")}
    fields["ffn_multipliers"] = [0.5, 4.0]  # the released config stores the spread list; start from the pair
    config = OpenELMConfig(**{k: v for k, v in fields.items() if k not in ("model_type", "auto_map")})
    assert config.num_query_heads == RELEASED_1_1B["num_query_heads"]
    assert config.num_kv_heads == RELEASED_1_1B["num_kv_heads"]
    assert config.ffn_multipliers == RELEASED_1_1B["ffn_multipliers"]
    assert [config.ffn_dims[i] for i in (0, 1, 13, 27)] == [1024, 1280, 4608, 8192]


def test_the_released_config_json_loads_as_is(tmp_path):
    import tinyllava_plugin_openelm.modeling_openelm  # noqa: F401  (registers openelm)
    from transformers import AutoConfig

    (tmp_path / "config.json").write_text(json.dumps(RELEASED_1_1B))
    config = AutoConfig.from_pretrained(tmp_path)  # no trust_remote_code: our class, not the auto_map
    assert type(config) is OpenELMConfig
    assert config.num_query_heads == RELEASED_1_1B["num_query_heads"]
    assert config.hidden_size == 2048 and config.num_hidden_layers == 28 and config.tie_word_embeddings is True
    assert config.dtype == torch.bfloat16


def test_per_layer_lists_that_disagree_with_the_multipliers_are_refused():
    with pytest.raises(ValueError, match=r"num_query_heads` \[4, 4, 4\] disagrees"):
        OpenELMConfig(**{**TINY, "num_query_heads": [4, 4, 4]})
    with pytest.raises(ValueError, match="qkv_multipliers"):
        OpenELMConfig(**{**TINY, "qkv_multipliers": [0.5, 0.7, 1.0]})


def test_openelm_270m_first_layer_matches_the_released_module_shapes():
    # OpenELM-270M: 16 layers, model_dim 1280, head_dim 64; its first block has 12 query and 3 kv heads,
    # qkv_proj 1280 -> 1152 and out_proj 768 -> 1280 (the released model's printed structure).
    config = OpenELMConfig(num_transformer_layers=16, model_dim=1280, head_dim=64, num_gqa_groups=4,
                           qkv_multipliers=[0.5, 1.0], ffn_multipliers=[0.5, 4.0], normalize_qk_projections=True,
                           share_input_output_layers=True)
    with torch.device("meta"):
        model = OpenELMForCausalLM(config)
    first = model.transformer.layers[0].attn
    assert (first.num_q_heads, first.num_kv_heads) == (12, 3)
    assert tuple(first.qkv_proj.weight.shape) == (1152, 1280)
    assert tuple(first.out_proj.weight.shape) == (1280, 768)


# -- released names ----------------------------------------------------------------------------------


def test_state_dict_keys_and_shapes_are_the_released_ones(tmp_path):
    from safetensors import safe_open

    model = tiny_model()
    own = {k: tuple(v.shape) for k, v in model.state_dict().items() if k != "lm_head.weight"}
    assert own == EXPECTED_SHAPES
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        saved = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    assert saved == EXPECTED_SHAPES  # the tied head is not written, as in the released files
    config = json.loads((tmp_path / "config.json").read_text())
    released_fields = set(RELEASED_1_1B) - {"auto_map", "torch_dtype"}
    assert released_fields <= set(config)
    assert not {"hidden_size", "num_hidden_layers", "tie_word_embeddings"} & set(config)  # aliases only


@pytest.mark.parametrize("shared", [True, False])
def test_a_released_style_folder_loads_without_remote_code(tmp_path, shared):
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    model = tiny_model(share_input_output_layers=shared)
    weights = {k: v.contiguous() for k, v in model.state_dict().items() if not (shared and k == "lm_head.weight")}
    if not shared:  # the released code also writes an unused classifier when the embeddings are not shared
        weights["transformer.classifier.weight"] = torch.zeros(300, 64)
    save_file(weights, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "config.json").write_text(json.dumps(released_style_config(model.config)))
    loaded, info = AutoModelForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert type(loaded) is OpenELMForCausalLM
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    is_tied = loaded.lm_head.weight.data_ptr() == loaded.transformer.token_embeddings.weight.data_ptr()
    assert is_tied == shared
    with torch.no_grad():
        assert torch.equal(model(IDS).logits, loaded.eval()(IDS).logits)


def test_save_then_from_pretrained_gives_identical_logits(tmp_path):
    model = tiny_model(share_input_output_layers=False)
    model.save_pretrained(tmp_path)
    again = OpenELMForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(model(IDS).logits, again(IDS).logits)
    # rotary inverse frequencies are a non-persistent buffer, rebuilt after the meta-device load
    assert torch.equal(again.transformer.rotary_emb.inv_freq, model.transformer.rotary_emb.inv_freq)


def test_weight_tying_follows_share_input_output_layers(tmp_path):
    from safetensors import safe_open

    tied = tiny_model()
    assert tied.lm_head.weight is tied.transformer.token_embeddings.weight
    untied = tiny_model(share_input_output_layers=False)
    assert untied.lm_head.weight.data_ptr() != untied.transformer.token_embeddings.weight.data_ptr()
    assert not torch.equal(untied.lm_head.weight, untied.transformer.token_embeddings.weight)
    untied.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        assert "lm_head.weight" in set(f.keys())


# -- numerics ----------------------------------------------------------------------------------------


def reference_logits(model: OpenELMForCausalLM, ids: torch.Tensor) -> torch.Tensor:
    """OpenELM's forward written out head by head from the state dict, following the released semantics:
    qkv rows are [queries | keys | values], query head h reads kv head h // groups, q/k RMSNorm before RoPE,
    RoPE by position 0..n-1 over half-split dims, GLU rows are [gate | up], logits use the token embeddings."""
    sd = {k: v.double() for k, v in model.state_dict().items()}
    cfg = model.config
    d, n = cfg.head_dim, ids.shape[1]

    def rms(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w

    def rope(x: torch.Tensor) -> torch.Tensor:  # x: (n, d)
        out = torch.empty_like(x)
        for pos in range(n):
            for j in range(d // 2):
                theta = pos * cfg.rope_freq_constant ** (-2 * j / d)
                a, b = x[pos, j], x[pos, j + d // 2]
                out[pos, j] = a * math.cos(theta) - b * math.sin(theta)
                out[pos, j + d // 2] = b * math.cos(theta) + a * math.sin(theta)
        return out

    x = sd["transformer.token_embeddings.weight"][ids[0]]
    causal = torch.full((n, n), float("-inf"), dtype=torch.float64).triu(1)
    for i in range(cfg.num_transformer_layers):
        p = f"transformer.layers.{i}."
        nq, nkv = cfg.num_query_heads[i], cfg.num_kv_heads[i]
        qkv = rms(x, sd[p + "attn_norm.weight"]) @ sd[p + "attn.qkv_proj.weight"].T
        heads = []
        for h in range(nq):
            g = h // (nq // nkv)
            q = rope(rms(qkv[:, h * d:(h + 1) * d], sd[p + "attn.q_norm.weight"]))
            k = rope(rms(qkv[:, (nq + g) * d:(nq + g + 1) * d], sd[p + "attn.k_norm.weight"]))
            v = qkv[:, (nq + nkv + g) * d:(nq + nkv + g + 1) * d]
            heads.append(torch.softmax(q @ k.T / math.sqrt(d) + causal, dim=-1) @ v)
        x = x + torch.cat(heads, dim=-1) @ sd[p + "attn.out_proj.weight"].T
        gate, up = (rms(x, sd[p + "ffn_norm.weight"]) @ sd[p + "ffn.proj_1.weight"].T).chunk(2, dim=-1)
        x = x + (torch.nn.functional.silu(gate) * up) @ sd[p + "ffn.proj_2.weight"].T
    return rms(x, sd["transformer.norm.weight"]) @ sd["transformer.token_embeddings.weight"].T


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_forward_matches_a_head_by_head_reference(attn):
    model = tiny_model(attn=attn)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):  # not all ones, so every norm must sit in its own place
                param.uniform_(0.5, 1.5)
        logits = model(IDS).logits[0].double()
    assert torch.allclose(logits, reference_logits(model, IDS), atol=1e-4)


def test_kv_cache_greedy_generation_equals_no_cache():
    model = tiny_model(seed=3)
    with torch.no_grad():
        cached = model.generate(IDS, max_new_tokens=8, do_sample=False, use_cache=True, pad_token_id=0)
        plain = model.generate(IDS, max_new_tokens=8, do_sample=False, use_cache=False, pad_token_id=0)
        assert torch.equal(cached, plain)
        # and step by step: the logits of the last token through the cache equal a full forward
        first = model(IDS[:, :-1], use_cache=True)
        step = model(IDS[:, -1:], cache=first.cache, use_cache=True)
        assert torch.allclose(step.logits[:, -1], model(IDS).logits[:, -1], atol=1e-5)


def test_generation_from_inputs_embeds_equals_generation_from_ids():
    """tinyllava generates from spliced embeddings; the new tokens must be those the ids would give."""
    model = tiny_model(seed=7)
    with torch.no_grad():
        from_ids = model.generate(IDS, max_new_tokens=6, do_sample=False, pad_token_id=0)
        embeds = model.get_input_embeddings()(IDS)
        from_embeds = model.generate(inputs_embeds=embeds, attention_mask=torch.ones_like(IDS), max_new_tokens=6,
                                     do_sample=False, pad_token_id=0)
    assert torch.equal(from_ids[:, IDS.shape[1]:], from_embeds[:, -6:])


def test_left_padded_batched_generation_matches_single_prompts():
    model = tiny_model(seed=4)
    short = IDS[:, 3:]
    batch = torch.cat([IDS, torch.cat([torch.zeros(1, 3, dtype=torch.long), short], dim=1)])
    mask = torch.ones_like(batch)
    mask[1, :3] = 0
    with torch.no_grad():
        together = model.generate(batch, attention_mask=mask, max_new_tokens=5, do_sample=False, pad_token_id=0)
        alone = model.generate(short, max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert torch.equal(together[1, -5:], alone[0, -5:])


def test_gradient_checkpointing_gives_the_same_gradients():
    grads, calls = [], []
    for checkpointing in (False, True):
        model = tiny_model(seed=5).train()
        if checkpointing:
            enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
            enable()
        count = [0]
        model.transformer.layers[0].attn.register_forward_hook(lambda *_, c=count: c.__setitem__(0, c[0] + 1))
        out = model(IDS, labels=IDS)
        out.loss.backward()
        grads.append(model.transformer.layers[1].attn.qkv_proj.weight.grad.clone())
        calls.append(count[0])
    assert calls == [1, 2]  # with checkpointing the block is recomputed in the backward pass
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_lora_through_peft_trains_only_the_adapters():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_model(seed=6), LoraConfig(r=4, target_modules=["qkv_proj", "out_proj", "proj_1"]))
    model.train()
    model(IDS, labels=IDS).loss.backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None}
    assert trained and all("lora_" in n for n in trained)
    assert any("layers.2.attn.qkv_proj.lora_B" in n for n in trained)
