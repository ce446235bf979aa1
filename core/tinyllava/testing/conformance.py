"""Conformance kits: pytest base classes a plugin's tests subclass to check the contract of its kind.

Usage in a plugin's tests (the component is always fetched through the public plugin path, entry points):

    from tinyllava.testing.conformance import ConnectorConformance

    class TestMyConnector(ConnectorConformance):
        name = "my-connector"
        options = {"depth": 2}

One kit per kind: `LLMConformance`, `VisionTowerConformance`, `ConnectorConformance` (and
`QueryConnectorConformance`), `ChatTemplateConformance`, `RecipeConformance`, `DatasetConformance`,
`BenchmarkConformance`. Every kit runs the `ComponentConformance` checks: the component resolves through
entry points and comes from a plugin; the plugin's entry module imports nothing heavy; the class honours its
kind's contract (no abstract method left, Options derived from `ComponentOptions`); unknown option keys are
refused; every Options default validates. Each kit's docstring says what it adds, the sizes it uses and the
class attributes that configure it. Assertion messages are rewritten by pytest (the kit is registered through
the `pytest11` entry point `tinyllava`), so a failing check shows the values it compared.
The `heavy_imports_after` and `check_*` functions serve checks that several plugins' own tests share
(LLM families: `tinyllava.testing.families`).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from tinyllava.testing.timeouts import SUBPROCESS_TIMEOUT_S

HEAVY_MODULES = ("torch", "transformers", "peft", "deepspeed", "bitsandbytes")


def refuse_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def heavy_imports_after(code: str) -> list[str]:
    """Heavy modules loaded by running `code` in a fresh interpreter.

    Listing, validating and schema generation import a plugin's component modules; they must stay light.
    """
    script = (
        "import json, sys\n"
        f"{code}\n"
        f"print(json.dumps(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def entry_module_imports(kind: str, name: str) -> list[str]:
    """Heavy modules imported by importing the plugin's entry module (in a fresh interpreter)."""
    from importlib import metadata

    from tinyllava.plugins.registry import get_registry

    entry = get_registry().entry(kind, name)
    ep = next(e for e in metadata.entry_points(group="tinyllava.plugins") if e.name == entry.plugin_id)
    return heavy_imports_after(f"import importlib\nimportlib.import_module({ep.value!r})")


def check_options_refused(kind: str, name: str, refused: list[tuple[dict[str, Any], str | None]]) -> Any:
    """Each options dict of `refused` fails validation, with a message matching its pattern (None: any).

    Returns the Options class, for checks of what is accepted.
    """
    from pydantic import ValidationError

    from tinyllava.plugins.registry import get_registry

    options_class = get_registry().component_class(kind, name).Options
    for options, match in refused:
        with pytest.raises(ValidationError, match=match):
            options_class.model_validate(options)
    return options_class


class ComponentConformance:
    """Checks shared by every kind. Subclasses set `kind`, `name` and `options`."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}

    @pytest.fixture
    def no_network(self, monkeypatch: pytest.MonkeyPatch) -> None:
        refuse_network(monkeypatch)

    def component(self, **overrides: Any) -> Any:
        """The component built from `options`, with `overrides` on top (for checks that vary one option)."""
        from tinyllava.plugins.registry import get_registry

        return get_registry().create(self.kind, self.name, {**self.options, **overrides})

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

    def test_honours_the_contract_of_its_kind(self) -> None:
        """A subclass of the kind's ABC with every abstract method implemented; Options from ComponentOptions."""
        from tinyllava.plugins.contracts import contract_problems
        from tinyllava.plugins.registry import get_registry

        cls = get_registry().entry(self.kind, self.name).load()
        assert contract_problems(self.kind, cls) == []

    def test_options_defaults_validate(self) -> None:
        """pydantic does not validate defaults by itself: a default outside its own constraints is a bug."""
        from tinyllava.plugins.contracts import default_problems

        assert default_problems(type(self.component()).Options) == []


class ConnectorConformance(ComponentConformance):
    kind: ClassVar[str] = "connector"
    vision_dim: ClassVar[int] = 24
    llm_dim: ClassVar[int] = 40
    num_tokens: ClassVar[int] = 16
    expected_tokens: ClassVar[int | None] = None  # None: same as num_tokens

    def build(self, **overrides: Any) -> Any:
        return self.component(**overrides).build(self.vision_dim, self.llm_dim, self.num_tokens)

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

    def test_hf_llava_export_is_exact_or_refused(self) -> None:
        """`hf_llava_export` refuses with a reason, or LLaVA's projector with the mapped weights computes the same."""
        import torch
        from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

        from tinyllava.interop.export_contract import PROJECTOR_PREFIX, NotExportable

        module = self.build().eval()
        try:
            part = self.component().hf_llava_export(module)
        except NotExportable as exc:
            assert exc.reason and self.name in exc.component
            return
        state = {part.keys[k]: v for k, v in module.state_dict().items()}
        assert len(state) == len(module.state_dict()) and all(k.startswith(PROJECTOR_PREFIX) for k in state)
        state.update(part.extra)
        config = SimpleNamespace(vision_feature_layer=-1, vision_config=SimpleNamespace(hidden_size=self.vision_dim),
                                 text_config=SimpleNamespace(hidden_size=self.llm_dim), **{
                                     "multimodal_projector_bias": True, "projector_hidden_act": "gelu", **part.llava})
        projector = LlavaMultiModalProjector(config).eval()
        projector.load_state_dict({k[len(PROJECTOR_PREFIX):]: v for k, v in state.items()})
        x = torch.randn(2, self.num_tokens, self.vision_dim)
        with torch.no_grad():
            assert torch.equal(projector(x), module(x))


class QueryConnectorConformance(ConnectorConformance):
    """Connectors that pool an image into a fixed number of learnt queries (Q-Former, Perceiver resampler).

    Subclasses also set `other_queries` (a count other than the options'), `trained_parameters` (dotted names
    of parameters gradients must reach besides the image) and `bad_options` (each must be refused).
    """

    queries_option: ClassVar[str] = "num_queries"
    other_queries: ClassVar[int] = 7
    trained_parameters: ClassVar[tuple[str, ...]] = ()
    bad_options: ClassVar[list[dict[str, Any]]] = []

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """One test per entry of the subclass's `bad_options`."""
        if "bad" in metafunc.fixturenames:
            metafunc.parametrize("bad", self.bad_options)

    def test_output_tokens_are_the_queries_whatever_the_image_length(self) -> None:
        import torch

        module = self.build(**{self.queries_option: self.other_queries}).eval()
        for n in (1, 16, 49):
            assert module(torch.randn(2, n, self.vision_dim)).shape == (2, self.other_queries, self.llm_dim)

    def test_output_depends_on_each_image_and_batches_are_independent(self) -> None:
        import torch

        torch.manual_seed(0)
        module = self.build().eval()
        a, b = torch.randn(1, self.num_tokens, self.vision_dim), torch.randn(1, self.num_tokens, self.vision_dim)
        with torch.no_grad():
            both = module(torch.cat([a, b]))
            alone = module(a)
        assert torch.allclose(both[:1], alone, atol=1e-5)
        assert not torch.allclose(both[0], both[1], atol=1e-3)

    def test_gradients_reach_the_queries_and_the_image(self) -> None:
        import torch

        module = self.build()
        x = torch.randn(2, self.num_tokens, self.vision_dim, requires_grad=True)
        module(x).square().mean().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
        assert self.trained_parameters, "name the parameters gradients must reach"
        for name in self.trained_parameters:
            grad = module.get_parameter(name).grad
            assert grad is not None and grad.abs().sum() > 0, name

    def test_bad_options_are_rejected(self, bad: dict[str, Any]) -> None:
        from pydantic import ValidationError

        with pytest.raises(ValidationError):
            self.component(**bad)


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

    def test_hf_llava_export_is_exact_or_refused(self) -> None:
        """`hf_llava_export` refuses with a reason, or the tower transformers builds from the exported config, with
        the mapped weights and LLaVA's feature selection, gives the same features."""
        import torch
        from transformers import AutoConfig, AutoModel

        from tinyllava.interop.export_contract import TOWER_PREFIX, NotExportable

        component = self.component()
        encoder, _ = component.build()
        encoder.eval()
        try:
            part = component.hf_llava_export(encoder)
        except NotExportable as exc:
            assert exc.reason and self.name in exc.component
            return
        state = {part.keys[k]: v for k, v in encoder.state_dict().items()}
        assert len(state) == len(encoder.state_dict()) and all(k.startswith(TOWER_PREFIX) for k in state)
        fields = dict(part.config)
        tower = AutoModel.from_config(AutoConfig.for_model(fields.pop("model_type"), **fields)).eval()
        tower.load_state_dict({k[len(TOWER_PREFIX):]: v for k, v in {**state, **part.extra}.items()})
        x = torch.randn(2, 3, self.image_size, self.image_size)
        with torch.no_grad():
            feats = tower(pixel_values=x, output_hidden_states=True).hidden_states[part.llava["vision_feature_layer"]]
            if part.llava["vision_feature_select_strategy"] == "default":
                feats = feats[:, 1:]
            assert torch.equal(feats, encoder(x))


def check_source_refused(kind: str, name: str, saved: Any, folder: Path, match: str) -> None:
    """`saved` (a transformers model or config of something else) is saved to `folder`: building `name` with
    `source` pointing there must fail with a ValueError matching `match`, which names what to use instead."""
    from tinyllava.plugins.registry import get_registry

    saved.save_pretrained(folder)
    with pytest.raises(ValueError, match=match):
        get_registry().create(kind, name, {"source": str(folder)}).build()


def check_pretrained_tower_folder(name: str, options: dict[str, Any], folder: Path, image_size: int = 32) -> Any:
    """A tower built from `options`, saved as a pretrained folder (model + image processor) and loaded from it
    with `source` gives the same features and keeps the processor's normalisation. Returns (encoder, loaded
    encoder, loaded processor) for a tower's own checks."""
    import torch

    from tinyllava.plugins.registry import get_registry

    encoder, processor = get_registry().create("vision_tower", name, options).build()
    encoder.model.save_pretrained(folder)
    processor.save_pretrained(folder)
    loaded, processor2 = get_registry().create("vision_tower", name, {"source": str(folder)}).build()
    pixels = torch.randn(1, 3, image_size, image_size)
    assert torch.allclose(encoder(pixels), loaded(pixels), atol=1e-6)
    assert list(processor2.image_mean) == list(processor.image_mean)
    return encoder, loaded, processor2


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


# -- recipes --------------------------------------------------------------------------------------------
TUNE_MODES = ("frozen", "full", "partial", "lora", "qlora")


def tiny_stand_in_model(width: int = 16, blocks: int = 2) -> Any:
    """A stand-in with the three component slots a recipe tunes, without any plugin: `language_model` is a tiny
    transformers Llama (`blocks` layers, hidden `width`), `vision_tower` and `connector` are stacks of `blocks`
    Linear(width, width) layers plus a LayerNorm, so every mode (frozen, full, partial, lora) applies."""
    from torch import nn
    from transformers import LlamaConfig, LlamaForCausalLM

    class Part(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(blocks))
            self.norm = nn.LayerNorm(width)

        def forward(self, x: Any) -> Any:
            for layer in self.layers:
                x = layer(x)
            return self.norm(x)

    class StandIn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.language_model = LlamaForCausalLM(LlamaConfig(
                vocab_size=64, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=blocks,
                num_attention_heads=2, num_key_value_heads=2))
            self.vision_tower, self.connector = Part(), Part()

    return StandIn()


class RecipeConformance(ComponentConformance):
    """Recipes: modes, default stages and what `prepare` trains.

    Checks that `tune_modes` are known modes; every default stage is a valid StageSpec that the recipe's own
    `check_stage` accepts; and `prepare` on each stage of `prepare_stages()` (default: the default stages that
    need no GPU, i.e. no qlora; else one stage training the connector) returns optimizer groups holding exactly
    the trainable parameters. `prepare` runs on `model()`, by default `tiny_stand_in_model()` (a 2-layer Llama of
    width 16 and two stacks of Linear(16, 16)); override `model()` for a real tiny model (`tinyllava.testing.tiny`).
    """

    kind: ClassVar[str] = "recipe"

    def model(self) -> Any:
        return tiny_stand_in_model()

    def prepare_stages(self) -> list[dict[str, Any]]:
        stages = [s for s in self.component().default_stages() if "qlora" not in json.dumps(s.get("tune", {}))]
        return stages or [{"name": "kit", "tune": {"llm": "frozen", "vision_tower": "frozen", "connector": "full"}}]

    def test_tune_modes_are_known(self) -> None:
        recipe = self.component()
        assert set(recipe.tune_modes) <= set(TUNE_MODES), recipe.tune_modes
        assert isinstance(recipe.needs_init_from, bool)

    def test_default_stages_are_valid_and_accepted(self) -> None:
        from tinyllava.spec.runspec import StageSpec

        recipe = self.component()
        stages = recipe.default_stages()
        assert isinstance(stages, list)
        for i, raw in enumerate(stages):
            stage = StageSpec.model_validate(raw)
            assert recipe.check_stage(stage, where=f"stages.{i}") == []

    def test_prepare_groups_exactly_the_trainable_parameters(self) -> None:
        from tinyllava.spec.runspec import StageSpec

        for raw in self.prepare_stages():
            model = self.model()
            groups = self.component().prepare(model, StageSpec.model_validate(raw))
            grouped = [p for g in groups for p in g["params"]]
            trainable = [p for p in model.parameters() if p.requires_grad]
            assert groups and all("lr" in g for g in groups), raw.get("name")
            assert {id(p) for p in grouped} == {id(p) for p in trainable}, raw.get("name")
            assert len(grouped) == len({id(p) for p in grouped}), "a parameter is in two groups"


# -- datasets -------------------------------------------------------------------------------------------
class DatasetConformance(ComponentConformance):
    """Datasets: what `materialize` writes is valid LLaVA data, the same every time, and cached.

    `options` should make a tiny dataset (a few records). Checks that `materialize(cache_root)` returns a JSON
    file and an image root whose records pass the core's record checks (`tinyllava.data.records.load_records`)
    with at least one record; that a second cache root gets identical JSON (deterministic); that the same root
    is reused, not rewritten; and that materialising opens no network connection.
    """

    kind: ClassVar[str] = "dataset"

    def test_materialize_writes_valid_llava_data(self, tmp_path: Path, no_network: None) -> None:
        from tinyllava.data.records import load_records

        json_path, image_root = self.component().materialize(tmp_path / "cache")
        assert Path(json_path).is_file() and Path(image_root).is_dir()
        checked = load_records(Path(json_path), Path(image_root))
        assert checked.problems == [] and len(checked.records) >= 1

    def test_materialize_is_deterministic_and_cached(self, tmp_path: Path) -> None:
        first, _ = self.component().materialize(tmp_path / "a")
        second, _ = self.component().materialize(tmp_path / "b")
        assert Path(first).read_text() == Path(second).read_text()
        stamp = Path(first).stat().st_mtime_ns
        again, _ = self.component().materialize(tmp_path / "a")
        assert Path(again) == Path(first) and Path(again).stat().st_mtime_ns == stamp


# -- benchmarks -----------------------------------------------------------------------------------------
class BenchmarkConformance(ComponentConformance):
    """Benchmarks: items, answers files and scores.

    Override `make_data(root)` to write a tiny copy of the benchmark's official files under `root` and return
    the folder `load_items` reads (default: None, for benchmarks that generate their data), and
    `answers(items)` to give the answers to score (default: an empty string for every item). Checks that
    `load_items` returns at most `limit` (3) items with unique string ids, non-empty prompts and a positive
    `max_new_tokens`, and exactly one item with limit=1 (and, when it reads files, that an empty folder is a
    DataLayoutError); that `score` returns JSON-serialisable metrics (and
    tables whose rows fit their columns, files that exist); that `write_answers` writes files that exist in
    the output folder.
    """

    kind: ClassVar[str] = "benchmark"
    limit: ClassVar[int] = 3

    def make_data(self, root: Path) -> Path | None:
        return None

    def answers(self, items: list[Any]) -> dict[str, str]:
        return {item.item_id: "" for item in items}

    def items(self, tmp_path: Path, limit: int | None = None) -> list[Any]:
        data = self.make_data(tmp_path / "data")
        return self.component().load_items(data, limit=self.limit if limit is None else limit)

    def test_load_items(self, tmp_path: Path, no_network: None) -> None:
        items = self.items(tmp_path)
        assert 1 <= len(items) <= self.limit
        ids = [item.item_id for item in items]
        assert all(isinstance(i, str) for i in ids) and len(set(ids)) == len(ids)
        assert all(isinstance(item.prompt, str) and item.prompt for item in items)
        assert all(item.max_new_tokens > 0 for item in items)
        assert len(self.items(tmp_path / "one", limit=1)) == 1
        if self.make_data(tmp_path / "again") is not None:  # it reads files: an empty folder says what is missing
            from tinyllava.components.benchmark import DataLayoutError

            empty = tmp_path / "empty"
            empty.mkdir()
            with pytest.raises(DataLayoutError):
                self.component().load_items(empty, limit=self.limit)

    def test_score_returns_json_metrics(self, tmp_path: Path) -> None:
        from tinyllava.components.benchmark import BenchmarkResult

        items = self.items(tmp_path)
        out = tmp_path / "out"
        out.mkdir()
        result = self.component().score(items, self.answers(items), out)
        assert isinstance(result, BenchmarkResult) and result.metrics
        json.dumps(result.metrics)
        for table in result.tables:
            assert all(len(row) == len(table.columns) for row in table.rows), table.title
        assert all(Path(f).exists() for f in result.files)

    def test_write_answers(self, tmp_path: Path) -> None:
        items = self.items(tmp_path)
        out = tmp_path / "answers"
        out.mkdir()
        for path in self.component().write_answers(items, self.answers(items), out):
            assert Path(path).is_file() and out in Path(path).parents
