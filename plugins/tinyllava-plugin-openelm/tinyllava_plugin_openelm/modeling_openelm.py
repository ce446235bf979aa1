"""OpenELM as a transformers model, written for tinyllava (no remote code).

Module and parameter names reproduce the released checkpoints' state-dict keys, so `from_pretrained` on a
downloaded `apple/OpenELM-*` folder loads every tensor:

    transformer.token_embeddings.weight
    transformer.layers.{i}.attn_norm.weight             RMSNorm over model_dim
    transformer.layers.{i}.attn.qkv_proj.weight         fused [q | k | v] projection, per-layer head counts
    transformer.layers.{i}.attn.q_norm.weight           RMSNorm over head_dim (normalize_qk_projections)
    transformer.layers.{i}.attn.k_norm.weight
    transformer.layers.{i}.attn.out_proj.weight
    transformer.layers.{i}.ffn_norm.weight
    transformer.layers.{i}.ffn.proj_1.weight            [gate | up] when ffn_with_glu, else up
    transformer.layers.{i}.ffn.proj_2.weight
    transformer.norm.weight
    lm_head.weight                                      absent from the files when share_input_output_layers

The blocks are transformers' own: PreTrainedModel + GenerationMixin, the Cache classes, the attention
interface (eager / sdpa / flash / flex), the causal-mask helper and GradientCheckpointingLayer, so generation
with a KV cache, gradient checkpointing and PEFT behave as for any native model. Importing this module registers
`openelm` with AutoConfig, AutoModel and AutoModelForCausalLM.

One deliberate difference from the released code: rotary positions come from `position_ids` (as in every
transformers model), not from the key length. The two agree for unpadded and right-padded inputs (training);
for left-padded batched generation each row here starts at position 0, where the released code would count the
padding too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import can_return_tuple

from tinyllava_plugin_openelm.configuration_openelm import OpenELMConfig

RMS_EPS = 1e-6  # fixed in the released architecture (not a config field)


class OpenELMRMSNorm(nn.Module):
    """RMS normalisation computed in float32, cast back, then scaled (the released order of operations)."""

    def __init__(self, num_features: int, eps: float = RMS_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return h.to(x.dtype) * self.weight

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class OpenELMRotaryEmbedding(nn.Module):
    """cos/sin tables of the standard (half-split) RoPE over head_dim, base `rope_freq_constant`, in float32.

    The inverse frequencies are a non-persistent buffer (no state-dict key, like the released model); the
    model's `_init_weights` recomputes them after a meta-device load.
    """

    def __init__(self, config: OpenELMConfig) -> None:
        super().__init__()
        self.head_dim = int(config.head_dim)
        self.base = float(config.rope_freq_constant)
        self.register_buffer("inv_freq", self.inverse_frequencies(), persistent=False)

    def inverse_frequencies(self, device: torch.device | None = None) -> torch.Tensor:
        exponents = torch.arange(0, self.head_dim, 2, dtype=torch.float32, device=device) / self.head_dim
        return 1.0 / (self.base**exponents)

    @torch.no_grad()
    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, seq) positions -> cos, sin of shape (batch, seq, head_dim), float32."""
        angles = position_ids[..., None].float() * self.inv_freq.to(position_ids.device)
        emb = torch.cat((angles, angles), dim=-1)
        return emb.cos(), emb.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (batch, heads, seq, head_dim) in float32 and cast back, as the released model does for bf16/fp16."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    xf = x.float()
    return (xf * cos + _rotate_half(xf) * sin).to(x.dtype)


def repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(b, kv_heads, s, d) -> (b, kv_heads * groups, s, d); query head h reads key/value head h // groups."""
    if groups == 1:
        return x
    b, heads, s, d = x.shape
    return x[:, :, None].expand(b, heads, groups, s, d).reshape(b, heads * groups, s, d)


def eager_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain softmax attention (the fallback, and the only one returning weights); output (b, s, heads, d)."""
    key = repeat_kv(key, module.num_key_value_groups)
    value = repeat_kv(value, module.num_key_value_groups)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


class OpenELMMultiHeadCausalAttention(nn.Module):
    """GQA with this layer's own head counts, one fused qkv projection and optional RMSNorm on q and k."""

    def __init__(self, config: OpenELMConfig, layer_idx: int) -> None:
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = int(config.head_dim)
        self.num_q_heads = int(config.num_query_heads[layer_idx])
        self.num_kv_heads = int(config.num_kv_heads[layer_idx])
        self.num_key_value_groups = self.num_q_heads // self.num_kv_heads  # read by the attention interfaces
        self.scaling = self.head_dim**-0.5
        self.is_causal = True
        self.qkv_proj = nn.Linear(
            config.model_dim, (self.num_q_heads + 2 * self.num_kv_heads) * self.head_dim, bias=False
        )
        if config.normalize_qk_projections:
            self.q_norm: OpenELMRMSNorm | None = OpenELMRMSNorm(self.head_dim)
            self.k_norm: OpenELMRMSNorm | None = OpenELMRMSNorm(self.head_dim)
        else:
            self.q_norm = self.k_norm = None
        self.out_proj = nn.Linear(self.num_q_heads * self.head_dim, config.model_dim, bias=False)
        self.out_proj.is_residual_projection = True  # scaled-down init, see OpenELMPreTrainedModel

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, seq, _ = hidden_states.shape
        qkv = self.qkv_proj(hidden_states).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        query, key, value = qkv.split([self.num_q_heads, self.num_kv_heads, self.num_kv_heads], dim=1)
        if self.q_norm is not None and self.k_norm is not None:
            query, key = self.q_norm(query), self.k_norm(key)
        cos, sin = position_embeddings
        query, key = apply_rotary(query, cos, sin), apply_rotary(key, cos, sin)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)
        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention)
        out, weights = attention(self, query, key, value, attention_mask, scaling=self.scaling, dropout=0.0, **kwargs)
        return self.out_proj(out.reshape(batch, seq, -1).contiguous()), weights


class OpenELMFeedForwardNetwork(nn.Module):
    """FFN with this layer's own width; with GLU, proj_1 holds [gate | up] and the gate goes through the activation."""

    def __init__(self, config: OpenELMConfig, layer_idx: int) -> None:
        super().__init__()
        self.ffn_with_glu = bool(config.ffn_with_glu)
        self.intermediate_dim = config.ffn_dims[layer_idx]
        width = 2 * self.intermediate_dim if self.ffn_with_glu else self.intermediate_dim
        self.proj_1 = nn.Linear(config.model_dim, width, bias=False)
        self.proj_2 = nn.Linear(self.intermediate_dim, config.model_dim, bias=False)
        self.proj_2.is_residual_projection = True
        if config.activation_fn_name not in ACT2FN:
            raise ValueError(f"OpenELM activation_fn_name {config.activation_fn_name!r} is not a transformers "
                             f"activation (e.g. 'swish', 'gelu')")
        self.act = ACT2FN[config.activation_fn_name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ffn_with_glu:
            gate, up = self.proj_1(x).chunk(2, dim=-1)
            return self.proj_2(self.act(gate) * up)
        return self.proj_2(self.act(self.proj_1(x)))


class OpenELMDecoderLayer(GradientCheckpointingLayer):
    """Pre-norm block: x + attn(attn_norm(x)), then x + ffn(ffn_norm(x))."""

    def __init__(self, config: OpenELMConfig, layer_idx: int) -> None:
        super().__init__()
        self.attn = OpenELMMultiHeadCausalAttention(config, layer_idx)
        self.ffn = OpenELMFeedForwardNetwork(config, layer_idx)
        self.ffn_norm = OpenELMRMSNorm(config.model_dim)
        self.attn_norm = OpenELMRMSNorm(config.model_dim)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        use_cache: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attn_out, weights = self.attn(
            self.attn_norm(hidden_states), position_embeddings, attention_mask=attention_mask, cache=cache, **kwargs
        )
        hidden_states = hidden_states + attn_out
        hidden_states = hidden_states + self.ffn(self.ffn_norm(hidden_states))
        return hidden_states, weights


class OpenELMPreTrainedModel(PreTrainedModel):
    """Weights initialised as the released code does: N(0, fan_in^-1/2) for linears, N(0, dim^-1/2) for the
    embedding, and the residual projections (out_proj, proj_2) scaled down by (2 * layers)^-1/2."""

    config_class = OpenELMConfig
    config: OpenELMConfig
    base_model_prefix = "transformer"
    supports_gradient_checkpointing = True
    _no_split_modules = ["OpenELMDecoderLayer"]
    _skip_keys_device_placement = ["past_key_values", "cache"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # The released code also builds an unused `transformer.classifier` when the embeddings are not shared.
    _keys_to_ignore_on_load_unexpected = [r"transformer\.classifier\.weight"]

    def _init_weights(self, module: nn.Module) -> None:
        config = self.config
        if isinstance(module, nn.Linear):
            if getattr(module, "is_residual_projection", False):
                std = config.model_dim**-0.5 * (2 * config.num_transformer_layers) ** -0.5
            else:
                std = module.in_features**-0.5
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=module.embedding_dim**-0.5)
        elif isinstance(module, OpenELMRMSNorm):
            init.ones_(module.weight)
        elif isinstance(module, OpenELMRotaryEmbedding):
            init.copy_(module.inv_freq, module.inverse_frequencies(module.inv_freq.device))


class OpenELMModel(OpenELMPreTrainedModel):
    """The decoder stack (`transformer.*` in the released checkpoints)."""

    def __init__(self, config: OpenELMConfig) -> None:
        super().__init__(config)
        self.token_embeddings = nn.Embedding(config.vocab_size, config.model_dim)
        self.layers = nn.ModuleList(OpenELMDecoderLayer(config, i) for i in range(config.num_transformer_layers))
        self.norm = OpenELMRMSNorm(config.model_dim)
        self.rotary_emb = OpenELMRotaryEmbedding(config)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.token_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.token_embeddings = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        past_key_values: Cache | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast:
        """`past_key_values` is accepted as the older name of `cache` (tinyllava's assembly still passes it)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids or inputs_embeds")
        kwargs.pop("return_dict", None)
        cache = cache if cache is not None else past_key_values
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            use_cache = False  # a recomputed layer would write its keys/values into the cache a second time
        if output_attentions is None:
            output_attentions = self.config.output_attentions
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if inputs_embeds is None:
            inputs_embeds = self.token_embeddings(input_ids)
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        if not use_cache:
            cache = None
        if position_ids is None:
            past = cache.get_seq_length() if cache is not None else 0
            position_ids = (torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device) + past).unsqueeze(0)
        mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=cache,
            position_ids=position_ids,
        )
        position_embeddings = self.rotary_emb(position_ids)
        hidden_states = inputs_embeds
        all_hidden: list[torch.Tensor] = []
        all_attn: list[torch.Tensor | None] = []
        for layer in self.layers:
            if output_hidden_states:
                all_hidden.append(hidden_states)
            hidden_states, weights = layer(
                hidden_states,
                position_embeddings,
                attention_mask=mask,
                cache=cache,
                use_cache=use_cache,
                **kwargs,
            )
            if output_attentions:
                all_attn.append(weights)
        hidden_states = self.norm(hidden_states)
        if output_hidden_states:
            all_hidden.append(hidden_states)
        return BaseModelOutputWithPast(
            last_hidden_state=hidden_states,
            cache=cache,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            attentions=tuple(all_attn) if output_attentions else None,
        )


class OpenELMForCausalLM(OpenELMPreTrainedModel, GenerationMixin):
    """OpenELM with its LM head; with share_input_output_layers the head is tied to the token embeddings
    (and, as in the released files, not saved)."""

    _tied_weights_keys = {"lm_head.weight": "transformer.token_embeddings.weight"}

    def __init__(self, config: OpenELMConfig) -> None:
        super().__init__(config)
        self.transformer = OpenELMModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.model_dim, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.token_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.transformer.token_embeddings = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def get_decoder(self) -> OpenELMModel:
        return self.transformer

    def set_decoder(self, decoder: OpenELMModel) -> None:
        self.transformer = decoder

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        past_key_values: Cache | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        outputs: BaseModelOutputWithPast = self.transformer(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache if cache is not None else past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden_states[:, keep, :])
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


def register() -> None:
    """Make `model_type: openelm` resolvable by the Auto classes (idempotent)."""
    AutoConfig.register("openelm", OpenELMConfig, exist_ok=True)
    AutoModel.register(OpenELMConfig, OpenELMModel, exist_ok=True)
    AutoModelForCausalLM.register(OpenELMConfig, OpenELMForCausalLM, exist_ok=True)


register()
