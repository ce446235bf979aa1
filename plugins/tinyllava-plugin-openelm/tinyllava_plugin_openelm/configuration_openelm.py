"""OpenELM's configuration, with the field names of the released `config.json` files (`model_type: openelm`).

OpenELM gives every layer its own width ("layer-wise scaling"): two multiplier ranges, one for the attention
width and one for the FFN width, are spread linearly over the layers, and each scaled width is rounded to a
multiple of a divisor. The per-layer results (`num_query_heads`, `num_kv_heads` and the expanded
`ffn_multipliers`) are stored in the released configs; here they are always recomputed from the multipliers,
as the released code does, and stored values must agree with them (a disagreement means the config was edited
by hand or this code drifted from the released formula: both are errors worth hearing about before loading).
"""

from numbers import Number
from typing import Any

from transformers import PretrainedConfig


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """Round `value` to the nearest multiple of `divisor`, at least `min_value` (default: `divisor`).

    If rounding to the nearest multiple would lose more than 10% of `value`, one more `divisor` is added, so a
    small width never collapses (the MobileNet channel rule the released code uses).
    """
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


def spread(multipliers: Any, num_layers: int, name: str) -> list[float]:
    """Per-layer multipliers: a number for every layer, a (first, last) pair spread linearly, or one per layer.

    The pair is spread with numpy's linspace and rounded to two decimals with numpy's rounding, exactly as the
    released configs were computed, so the stored per-layer lists are reproduced digit for digit.
    """
    import numpy as np

    if isinstance(multipliers, Number):
        return [float(multipliers)] * num_layers
    if isinstance(multipliers, (list, tuple)):
        if len(multipliers) == 2:
            spaced = np.linspace(multipliers[0], multipliers[1], num=num_layers, dtype=float)
            return [float(round(v, 2)) for v in spaced]
        if len(multipliers) == num_layers:
            return [float(v) for v in multipliers]
    raise ValueError(
        f"OpenELM `{name}` must be a number, a [first, last] pair or one value per layer "
        f"({num_layers} layers); got {multipliers!r}"
    )


class OpenELMConfig(PretrainedConfig):
    """Configuration of an OpenELM decoder. Field names and defaults follow the released checkpoints.

    Derived, per layer: `num_query_heads[i]`, `num_kv_heads[i]` and `ffn_dims[i]` (the FFN hidden width, not
    serialised). `hidden_size`, `num_hidden_layers`, `max_position_embeddings` and `tie_word_embeddings` are
    aliases of `model_dim`, `num_transformer_layers`, `max_context_length` and `share_input_output_layers`, so
    generic transformers / PEFT / DeepSpeed code that reads the usual names works.
    """

    model_type = "openelm"
    keys_to_ignore_at_inference = ["past_key_values", "cache"]
    attribute_map = {
        "hidden_size": "model_dim",
        "num_hidden_layers": "num_transformer_layers",
        "max_position_embeddings": "max_context_length",
        "tie_word_embeddings": "share_input_output_layers",
    }

    vocab_size: int = 32000
    max_context_length: int = 2048
    num_transformer_layers: int = 12
    model_dim: int = 2048
    head_dim: int = 128
    qkv_multipliers: float | list[float] = 1.0
    num_query_heads: int | list[int] | None = None
    num_kv_heads: int | list[int] | None = None
    num_gqa_groups: int = 1
    ffn_multipliers: float | list[float] = 4.0
    ffn_with_glu: bool = True
    ffn_dim_divisor: int = 256
    activation_fn_name: str = "swish"
    normalization_layer_name: str = "rms_norm"
    normalize_qk_projections: bool = False
    share_input_output_layers: bool = False
    rope_freq_constant: int | float = 10000
    rope_max_length: int = 4096
    initializer_range: float = 0.02
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2

    def __post_init__(self, **kwargs: Any) -> None:
        self._derive_layer_widths()
        super().__post_init__(**kwargs)

    def _derive_layer_widths(self) -> None:
        """Compute the per-layer head counts and FFN widths from the multipliers (the layer-wise scaling)."""
        layers = int(self.num_transformer_layers)
        if layers < 1 or self.model_dim < 1 or self.head_dim < 1:
            raise ValueError("OpenELM needs num_transformer_layers, model_dim and head_dim >= 1")
        if not isinstance(self.num_gqa_groups, int) or self.num_gqa_groups < 1:
            raise ValueError(f"OpenELM `num_gqa_groups` (query heads per key/value head) must be an int >= 1, "
                             f"got {self.num_gqa_groups!r}")
        if self.normalization_layer_name != "rms_norm":
            raise ValueError(f"OpenELM supports normalization_layer_name 'rms_norm' only, got "
                             f"{self.normalization_layer_name!r}")
        if isinstance(self.qkv_multipliers, (list, tuple)) and len(self.qkv_multipliers) != 2:
            raise ValueError(f"OpenELM `qkv_multipliers` must be a number or a [first, last] pair, got "
                             f"{self.qkv_multipliers!r}")
        # Attention: the query width is rounded to a multiple of head_dim * num_gqa_groups, so the query heads
        # split evenly into groups that share one key/value head.
        qkv = spread(self.qkv_multipliers, layers, "qkv_multipliers")
        query_dims = [make_divisible(self.model_dim * m, self.head_dim * self.num_gqa_groups) for m in qkv]
        query_heads = [q // self.head_dim for q in query_dims]
        kv_heads = [q // self.num_gqa_groups for q in query_heads]
        ffn = spread(self.ffn_multipliers, layers, "ffn_multipliers")
        for name, derived in (("num_query_heads", query_heads), ("num_kv_heads", kv_heads)):
            given = getattr(self, name)
            if given is None:
                continue
            expected = [given] * layers if isinstance(given, int) else [int(v) for v in given]
            if expected != derived:
                raise ValueError(
                    f"OpenELM `{name}` {given!r} disagrees with the layer-wise scaling of qkv_multipliers="
                    f"{self.qkv_multipliers!r}, model_dim={self.model_dim}, head_dim={self.head_dim}, "
                    f"num_gqa_groups={self.num_gqa_groups}, which gives {derived}; drop `{name}` or fix the multipliers"
                )
        self.num_query_heads = query_heads
        self.num_kv_heads = kv_heads
        self.ffn_multipliers = ffn

    @property
    def ffn_dims(self) -> list[int]:
        """Hidden width of each layer's FFN (before the GLU doubling of `proj_1`)."""
        return [make_divisible(m * self.model_dim, self.ffn_dim_divisor) for m in self.ffn_multipliers]
