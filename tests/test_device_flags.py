"""`--device` / `--dtype` for eval, chat and predict: resolution rules, clear errors, and the CPU paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tinyllava.inference.device import DeviceError, check_device_name, check_dtype_name, resolve, resolve_dtype
from tinyllava.testing.timeouts import SUBPROCESS_TIMEOUT_S


@pytest.fixture
def no_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    """A machine with two CUDA devices, as far as resolution can tell (nothing is allocated on them)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Fake GPU")


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", " CUDA:1 "])
def test_device_spellings_accepted(name):
    assert check_device_name(name) == name.strip().lower()


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:x", "cuda0", "mps:0", ""])
def test_device_spelling_errors_list_the_choices(name):
    with pytest.raises(DeviceError, match=r"auto, cpu, cuda, cuda:N"):
        check_device_name(name)


def test_dtype_spellings():
    assert [check_dtype_name(x) for x in ("auto", "float32", "bf16", "FP16", "half")] == [
        "auto", "float32", "bfloat16", "float16", "float16"]
    with pytest.raises(DeviceError, match="float32, bfloat16, float16"):
        check_dtype_name("float64")


def test_auto_without_cuda_is_cpu_float32(no_cuda):
    import torch

    assert resolve("auto", "auto") == (torch.device("cpu"), torch.float32)
    assert resolve("cpu", "bfloat16") == (torch.device("cpu"), torch.bfloat16)


def test_cuda_without_cuda_says_why_and_what_to_pass(no_cuda):
    for name in ("cuda", "cuda:1"):
        with pytest.raises(DeviceError, match=r"asks for a GPU but .*use --device cpu"):
            resolve(name, "auto")


def test_auto_with_cuda_is_the_gpu_in_bfloat16(two_gpus):
    import torch

    assert resolve("auto", "auto") == (torch.device("cuda", 0), torch.bfloat16)
    assert resolve("cuda:1", "float32") == (torch.device("cuda", 1), torch.float32)
    assert resolve("cuda", "auto")[0] == torch.device("cuda", 0)


def test_gpu_index_out_of_range(two_gpus):
    with pytest.raises(DeviceError, match=r"only 2 CUDA device\(s\) \(cuda:0 to cuda:1\)"):
        resolve("cuda:2", "auto")


def test_gpu_without_bfloat16_falls_back_to_float16_or_refuses(two_gpus, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_dtype("auto", torch.device("cuda", 0)) == torch.float16
    with pytest.raises(DeviceError, match="no bfloat16 support; use --dtype float16"):
        resolve_dtype("bfloat16", torch.device("cuda", 0))


# -- the commands ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from tinyllava.testing import save_and_reload_tiny

    folder = tmp_path_factory.mktemp("ckpt")
    save_and_reload_tiny(folder)
    return folder


def _invoke(args: list[str], stdin: str | None = None):
    from typer.testing import CliRunner

    from tinyllava_cli.app import app

    return CliRunner().invoke(app, args, input=stdin)


def test_misspelt_device_fails_before_torch_is_imported(tmp_path):
    probe = ("import json, sys\nfrom tinyllava_cli.app import main\n"
             "sys.argv = ['tinyllava', 'eval', '--model', 'nowhere', '-b', 'shapes', '--device', 'gpu']\n"
             "try:\n    main()\nexcept SystemExit as e:\n"
             "    print('RESULT=' + json.dumps([e.code, 'torch' in sys.modules]))\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S,
                          env={**os.environ, "COLUMNS": "250"})
    result = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT="))[7:])
    assert result == [2, False]
    assert "--device 'gpu' is not a device" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", [
    ["eval", "-b", "shapes", "--limit", "2"],
    ["chat"],
    ["predict", "--input", "q.jsonl", "--output", "a.jsonl"],
])
def test_cuda_on_a_machine_without_it_is_a_clear_error(command, tiny_ckpt, no_cuda, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "q.jsonl").write_text(json.dumps({"id": "a", "question": "Hi"}) + "\n")
    result = _invoke([command[0], "--model", str(tiny_ckpt), *command[1:], "--device", "cuda:1"])
    assert result.exit_code == 2
    assert "asks for a GPU" in result.output and "--device cpu" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_bad_dtype_is_a_clear_error(tiny_ckpt, tmp_path):
    result = _invoke(["chat", "--model", str(tiny_ckpt), "--dtype", "int8"])
    assert result.exit_code == 2 and "--dtype 'int8' is not a dtype" in result.output


def test_predict_on_cpu_in_bfloat16(tiny_ckpt, tmp_path):
    from PIL import Image

    Image.new("RGB", (32, 32), (0, 0, 200)).save(tmp_path / "blue.png")
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"id": "a", "question": "What colour?", "image": "blue.png"}) + "\n"
                         + json.dumps({"id": "b", "question": "Hello"}) + "\n")
    out = tmp_path / "a.jsonl"
    result = _invoke(["predict", "--model", str(tiny_ckpt), "--input", str(questions), "--output", str(out),
                      "--image-root", str(tmp_path), "--max-new-tokens", "4", "--device", "cpu", "--dtype", "bf16"])
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["a", "b"]


def test_load_in_bfloat16_keeps_rotary_frequencies_in_float32(tiny_ckpt):
    import torch

    from tinyllava.checkpoint import load_checkpoint

    loaded = load_checkpoint(tiny_ckpt, device="cpu", dtype="bfloat16")
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    rotary = [m for m in loaded.model.modules() if type(m).__name__.endswith("RotaryEmbedding")]
    assert rotary and all(b.dtype == torch.float32 for m in rotary for b in m.buffers() if b.is_floating_point())


def test_pipeline_puts_inputs_on_the_model_device_in_the_tower_dtype(tiny_ckpt, monkeypatch):
    """The CUDA path by construction: every tensor handed to the model is on the model's device, pixels in the
    tower's dtype (checked here with bfloat16 on the CPU)."""
    import torch
    from PIL import Image

    from tinyllava.inference import Pipeline
    from tinyllava.inference import decode as decode_module
    from tinyllava.inference.pipeline import GenerationSettings

    pipe = Pipeline.from_checkpoint(tiny_ckpt, device=torch.device("cpu"), dtype=torch.bfloat16)
    seen = {}
    original = decode_module.decode

    def spy(model, input_ids, attention_mask, pixel_values, **kwargs):
        seen.update(ids=input_ids.device, mask=attention_mask.device, pixels=(pixel_values.device, pixel_values.dtype))
        return original(model, input_ids, attention_mask, pixel_values, **kwargs)

    monkeypatch.setattr(decode_module, "decode", spy)
    pipe.answer([[{"from": "human", "value": "<image>\nWhat colour?"}]], [Image.new("RGB", (32, 32))],
                GenerationSettings(max_new_tokens=2))
    assert seen == {"ids": pipe.device, "mask": pipe.device, "pixels": (pipe.device, torch.bfloat16)}
