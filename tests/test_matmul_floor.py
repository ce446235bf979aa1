"""benchmarks/matmul_floor.py: the matrix work it counts for a step, and a run of the script on a tiny workload."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from tinyllava.testing.timeouts import SUBPROCESS_TIMEOUT_S

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "matmul_floor.py"


def floor_module():
    spec = importlib.util.spec_from_file_location("matmul_floor", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["matmul_floor"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_step_gemms_count_forward_input_and_weight_gradients():
    mf = floor_module()
    shape = mf.LlamaShape(hidden=8, intermediate=16, layers=3, heads=2, kv_heads=1)  # kv dim 4
    tokens = 10
    per_token_full = 8 * 8 + 8 * 4 + 8 * 4 + 8 * 8 + 3 * 8 * 16  # q, k, v, o, gate, up, down weights
    per_token_last = 8 * 4 + 8 * 4  # the last layer: keys and values only
    forward = 2 * tokens * (2 * per_token_full + per_token_last)
    frozen = sum(g.flops for g in mf.step_gemms(shape, tokens, train_weights=False))
    trained = sum(g.flops for g in mf.step_gemms(shape, tokens, train_weights=True))
    assert frozen == 2 * forward  # forward + the input gradient (it reaches the connector)
    assert trained == 3 * forward  # + the weight gradient
    assert {g.name for g in mf.step_gemms(shape, tokens, True)} >= {"down weight grad", "k input grad"}


def test_script_writes_a_floor_per_stage(tmp_path):
    model = tmp_path / "data" / "models" / "tinyllama-tiny"
    model.mkdir(parents=True)
    model.joinpath("config.json").write_text(json.dumps({
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2}))
    stages = [{"stage": s, "variant": "A", "samples_per_s": 20.0, "real_tokens_per_s": 20.0 * 24}
              for s in ("pretrain", "finetune", "lora")]
    throughput = tmp_path / "summary.json"
    throughput.write_text(json.dumps({"stages": stages}))
    out = tmp_path / "floor.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--data-dir", str(tmp_path / "data"), "--throughput",
                           str(throughput), "--threads", "1", "--repeat", "2", "--json", str(out)],
                          capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert [s["stage"] for s in result["stages"]] == ["pretrain", "finetune"]  # LoRA has no target
    for s in result["stages"]:
        assert s["tokens_per_step"] == 8 * 24
        assert s["floor_ms"] > 0 and abs(s["floor_samples_per_s"] - 8000 / s["floor_ms"]) < 1e-9
        assert round(s["target_samples_per_s"], 6) == {"pretrain": 56.4, "finetune": 23.2}[s["stage"]]
    assert "floor samples/s" in proc.stdout
