"""Conformance kit: pytest base classes a plugin's tests subclass to check the contract of its kind.

Usage in a plugin's tests (the component is always fetched through the public plugin path):

    from tinyllava.testing.conformance import ConnectorConformance

    class TestMyConnector(ConnectorConformance):
        name = "my-connector"
        options = {"depth": 2}

Every class checks: the component resolves through entry points; its plugin's entry module imports
nothing heavy; its Options reject unknown keys; and, per kind, shapes, a save/load round trip on
disk, dtype moves, and that building it opens no network connection.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

HEAVY_MODULES = ("torch", "transformers", "peft", "deepspeed", "bitsandbytes")


def refuse_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def entry_module_imports(kind: str, name: str) -> list[str]:
    """Heavy modules imported by importing the plugin's entry module (in a fresh interpreter)."""
    from importlib import metadata

    from tinyllava.plugins.registry import get_registry

    entry = get_registry().entry(kind, name)
    ep = next(e for e in metadata.entry_points(group="tinyllava.plugins") if e.name == entry.plugin_id)
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({ep.value!r})\n"
        f"print(json.dumps(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


class ComponentConformance:
    """Checks shared by every kind. Subclasses set `kind`, `name` and `options`."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}

    @pytest.fixture
    def no_network(self, monkeypatch: pytest.MonkeyPatch) -> None:
        refuse_network(monkeypatch)

    def component(self) -> Any:
        from tinyllava.plugins.registry import get_registry

        return get_registry().create(self.kind, self.name, dict(self.options))

    def test_resolves_through_entry_points(self) -> None:
        from tinyllava.plugins.registry import get_registry

        entry = get_registry().entry(self.kind, self.name)
        assert entry.reference.split(":")[0].split(".")[0] != "tinyllava"  # provided by a plugin, not the core
        assert self.component().name == self.name

    def test_entry_module_is_import_light(self) -> None:
        assert entry_module_imports(self.kind, self.name) == []

    def test_options_reject_unknown_keys(self) -> None:
        from pydantic import ValidationError

        cls = type(self.component())
        with pytest.raises(ValidationError):
            cls.Options.model_validate({**self.options, "surely_not_an_option": 1})


class ConnectorConformance(ComponentConformance):
    kind: ClassVar[str] = "connector"
    vision_dim: ClassVar[int] = 24
    llm_dim: ClassVar[int] = 40
    num_tokens: ClassVar[int] = 16
    expected_tokens: ClassVar[int | None] = None  # None: same as num_tokens

    def build(self) -> Any:
        return self.component().build(self.vision_dim, self.llm_dim, self.num_tokens)

    def test_shape_contract(self, no_network: None) -> None:
        import torch

        out = self.build()(torch.randn(2, self.num_tokens, self.vision_dim))
        expected = self.expected_tokens if self.expected_tokens is not None else self.num_tokens
        assert out.shape == (2, expected, self.llm_dim)

    def test_save_load_roundtrip(self, tmp_path: Path) -> None:
        import torch
        from safetensors.torch import load_model, save_model

        torch.manual_seed(0)
        first = self.build().eval()
        save_model(first, str(tmp_path / "c.safetensors"))
        torch.manual_seed(1)
        second = self.build().eval()
        load_model(second, str(tmp_path / "c.safetensors"))
        x = torch.randn(1, self.num_tokens, self.vision_dim)
        assert torch.allclose(first(x), second(x))

    def test_dtype_moves(self) -> None:
        import torch

        module = self.build().to(torch.bfloat16)
        out = module(torch.randn(1, self.num_tokens, self.vision_dim, dtype=torch.bfloat16))
        assert out.dtype == torch.bfloat16


class VisionTowerConformance(ComponentConformance):
    """`options` must build a tiny random tower; `image_size` is its input size."""

    kind: ClassVar[str] = "vision_tower"
    image_size: ClassVar[int] = 32

    def test_shape_contract(self, no_network: None) -> None:
        import torch

        encoder, processor = self.component().build()
        feats = encoder(torch.randn(2, 3, self.image_size, self.image_size))
        assert feats.shape == (2, encoder.num_tokens, encoder.hidden_size)
        from PIL import Image

        pixels = processor(images=Image.new("RGB", (50, 40)), return_tensors="pt")["pixel_values"]
        assert pixels.shape[-2:] == (self.image_size, self.image_size)

    def test_checkpoint_roundtrip(self, tmp_path: Path) -> None:
        """from_config on the saved config + the saved weights reproduce the features."""
        import torch
        from safetensors.torch import load_model, save_model

        component = self.component()
        encoder, processor = component.build()
        encoder.eval()
        save_model(encoder, str(tmp_path / "t.safetensors"))
        processor.save_pretrained(tmp_path / "proc")
        config = json.loads(json.dumps(encoder.config.to_dict()))
        again = component.from_config(config, processor).eval()
        load_model(again, str(tmp_path / "t.safetensors"))
        x = torch.randn(1, 3, self.image_size, self.image_size)
        assert torch.allclose(encoder(x), again(x), atol=1e-6)

    def test_dtype_moves(self) -> None:
        import torch

        encoder, _ = self.component().build()
        encoder = encoder.to(torch.bfloat16)
        out = encoder(torch.randn(1, 3, self.image_size, self.image_size))
        assert out.dtype == torch.bfloat16


class LLMConformance(ComponentConformance):
    """`options` must build a tiny random model (with its tokenizer) from a config."""

    kind: ClassVar[str] = "llm"

    def test_build_and_tokenizer_quirks(self, no_network: None) -> None:
        import torch

        component = self.component()
        model, tokenizer = component.build()
        tokenizer = component.prepare_tokenizer(tokenizer)
        assert tokenizer.pad_token_id is not None
        ids = torch.tensor([tokenizer("hello world", add_special_tokens=False)["input_ids"]])
        assert model(ids).logits.shape[:2] == ids.shape
        assert model.get_input_embeddings().weight.shape[0] >= len(tokenizer)

    def test_reload_from_local_folder(self, tmp_path: Path) -> None:
        """save_pretrained, then from_pretrained on the folder, gives the same logits."""
        import torch

        component = self.component()
        model, tokenizer = component.build()
        model.eval()
        model.save_pretrained(tmp_path)
        tokenizer.save_pretrained(tmp_path)
        again = self.pretrained_component(str(tmp_path))
        model2, tok2 = again.build()
        model2.eval()
        ids = torch.tensor([tokenizer("hello world", add_special_tokens=False)["input_ids"]])
        assert torch.allclose(model(ids).logits, model2(ids).logits, atol=1e-5)
        skeleton = component.from_config(json.loads(json.dumps(model.config.to_dict())))
        assert sum(p.numel() for p in skeleton.parameters()) == sum(p.numel() for p in model.parameters())

    def pretrained_component(self, folder: str) -> Any:
        """The component loading from a local folder; override if the option is not called `source`."""
        from tinyllava.plugins.registry import get_registry

        return get_registry().create(self.kind, self.name, {"source": folder})

    def test_dtype_moves(self) -> None:
        import torch

        model, tokenizer = self.component().build()
        model = model.to(torch.bfloat16)
        ids = torch.tensor([tokenizer("hi", add_special_tokens=False)["input_ids"]])
        assert model(ids).logits.dtype == torch.bfloat16


class ChatTemplateConformance(ComponentConformance):
    """Checks that labels train exactly the answers; subclasses provide `make_tokenizer()`."""

    kind: ClassVar[str] = "chat_template"
    conversation: ClassVar[list[dict[str, str]]] = [
        {"from": "human", "value": "<image>\nWhat is this?"},
        {"from": "gpt", "value": "A cat."},
        {"from": "human", "value": "Sure?"},
        {"from": "gpt", "value": "Yes"},
    ]

    def make_tokenizer(self) -> Any:
        raise NotImplementedError("return a tokenizer this template is made for")

    def test_labels_train_only_answers(self) -> None:
        from tinyllava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX

        template, tok = self.component(), self.make_tokenizer()
        template.check_tokenizer(tok)
        enc = template.encode(self.conversation, tok)
        assert len(enc.input_ids) == len(enc.labels)
        assert enc.input_ids.count(IMAGE_TOKEN_INDEX) == 1
        trained = [t for t, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != IGNORE_INDEX]
        assert all(lab in (IGNORE_INDEX, t) for t, lab in zip(enc.input_ids, enc.labels, strict=True))
        text = tok.decode(trained)
        for turn in self.conversation:
            if turn["from"] == "gpt":
                assert turn["value"] in text
            else:
                assert turn["value"].replace("<image>", "").strip() not in text

    def test_generation_prompt_is_the_training_prefix(self) -> None:
        template, tok = self.component(), self.make_tokenizer()
        full = template.encode(self.conversation[:2], tok).input_ids
        prompt = template.generation_prompt(self.conversation[:1], tok)
        assert full[: len(prompt)] == prompt
        stop = template.stop_token_ids(tok)
        assert stop and full[-1] in stop
