"""Tiny random models as F32 GGUF files, so that each LLM family plugin tests its `gguf_file` path offline.

No real GGUF download is needed. Only what
transformers' GGUF loader reads is written (hyper-parameters, token ids, tensors under llama.cpp's names);
there is no tokenizer in the file, so load it with the `tokenizer` option pointing at a saved folder.
Needs the `gguf` package (`pip install 'tinyllava[gguf]'`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_tiny_gguf(model: Any, arch: str, path: Path) -> Path:
    """`arch` is llama.cpp's architecture name (qwen2, qwen3, phi3, stablelm, gemma2, gemma3 ...)."""
    import gguf

    cfg = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], cfg.num_hidden_layers)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_vocab_size(cfg.vocab_size)
    if getattr(cfg, "rms_norm_eps", None) is not None:
        writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    if getattr(cfg, "layer_norm_eps", None) is not None:
        writer.add_layer_norm_eps(cfg.layer_norm_eps)
    if getattr(cfg, "head_dim", None) is not None:
        writer.add_key_length(cfg.head_dim)
        writer.add_value_length(cfg.head_dim)
    for role in ("bos", "eos", "pad"):
        token_id = getattr(cfg, f"{role}_token_id", None)
        if isinstance(token_id, int):
            getattr(writer, f"add_{role}_token_id")(token_id)
    for name, tensor in model.state_dict().items():
        module, _, kind = name.rpartition(".")
        gguf_name = names.get_name(module)
        if gguf_name is None:
            if name == "lm_head.weight" and cfg.tie_word_embeddings:
                continue  # tied: llama.cpp stores only the embedding
            raise ValueError(f"no GGUF name for {name} in architecture {arch}")
        data = tensor.detach().float().numpy()
        if arch.startswith("gemma") and name.endswith("norm.weight"):
            data = data + 1.0  # llama.cpp stores Gemma's norm weights as 1 + w
        writer.add_tensor(f"{gguf_name}.{kind}", data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def check_gguf_roundtrip(llm_name: str, config: dict[str, Any], arch: str, cls_name: str, folder: Path) -> None:
    """Build a tiny `llm_name` model, write it as GGUF, load it back through the plugin: same class, same logits."""
    import torch

    from tinyllava.plugins.registry import get_registry

    model, tok = get_registry().create("llm", llm_name, {"config": config, "tokenizer_vocab_size": 300}).build()
    write_tiny_gguf(model, arch, folder / "tiny.gguf")
    tok.save_pretrained(folder / "tokenizer")
    again, tok2 = get_registry().create("llm", llm_name, {
        "source": str(folder), "gguf_file": "tiny.gguf", "tokenizer": str(folder / "tokenizer")}).build()
    assert type(again).__name__ == cls_name
    ids = torch.tensor([tok("What is this?")["input_ids"]])
    assert torch.allclose(model(ids).logits, again(ids).logits, atol=1e-5)
    assert len(tok2) == len(tok)


def gguf_roundtrip_test(llm_name: str, cases: list[tuple[dict[str, Any], str, str]]) -> Callable[..., None]:
    """A family's GGUF test, parametrised over (config, llama.cpp arch, class name) cases; a test module assigns
    it to a `test_*` name, so that each family lists only its members."""
    import pytest

    @pytest.mark.parametrize(("config", "arch", "cls_name"), cases)
    def test_gguf_file_loads_with_the_class_of_its_architecture(tmp_path: Path, config: dict[str, Any], arch: str,
                                                                cls_name: str) -> None:
        """A tiny model written as F32 GGUF (llama.cpp tensor names) loads back with the same logits."""
        check_gguf_roundtrip(llm_name, config, arch, cls_name, tmp_path)

    return test_gguf_file_loads_with_the_class_of_its_architecture
