"""`tinyllava plugins new KIND NAME`: an out-of-tree plugin distribution that installs and passes its tests at once.

The files written are a starting point that already works: a pyproject with the entry point, an import-light
registration module, a component with validated Options, a README with an options table and tests that run
the conformance kit of its kind. Only the public API (`tinyllava.api`, `tinyllava.kits`, `tinyllava.testing`)
is used, so the plugin keeps working across tinyllava releases of the same plugin API major.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from tinyllava import __version__

NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")


@dataclass(frozen=True)
class KindTemplate:
    hook: str  # registration hook
    module: str  # component module name
    cls: str  # component class name suffix
    extras: str  # tinyllava extras the component needs
    summary: str  # one line for the README
    options: tuple[tuple[str, str, str], ...]  # (option, default, meaning) for the README table
    component: str  # the component module
    test: str  # the plugin's tests
    spec: str  # a spec snippet for the README


CONNECTOR = KindTemplate(
    hook="register_connectors", module="connector", cls="Connector", extras="[train]",
    summary="a connector: image features (B, N, D_vision) to LLM tokens (B, N, D_llm)",
    options=(("hidden_multiplier", "1.0", "hidden width as a multiple of the LLM width (> 0)"),
             ("act", "gelu", "activation between the two layers: gelu or relu")),
    component='''"""The $name connector: two Linear layers with an activation between them."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from tinyllava.api import ComponentOptions, Connector


class ${Cls}Options(ComponentOptions):
    hidden_multiplier: float = Field(1.0, gt=0, description="hidden width as a multiple of the LLM width")
    act: Literal["gelu", "relu"] = Field("gelu", description="activation between the two layers")


class ${Cls}Connector(Connector):
    Options: ClassVar[type[ComponentOptions]] = ${Cls}Options

    def build(self, vision_dim: int, llm_dim: int, num_vision_tokens: int) -> Any:
        from torch import nn  # heavy imports inside methods: listing plugins stays light

        opts: ${Cls}Options = self.options  # type: ignore[assignment]
        hidden = max(1, round(llm_dim * opts.hidden_multiplier))
        act = nn.GELU() if opts.act == "gelu" else nn.ReLU()
        return nn.Sequential(nn.Linear(vision_dim, hidden), act, nn.Linear(hidden, llm_dim))
''',
    test='''"""The $name connector through the public plugin path, and the connector conformance kit."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from tinyllava.api import get_registry
from tinyllava.testing.conformance import ConnectorConformance


class TestConformance(ConnectorConformance):
    name: ClassVar[str] = "$name"
    options: ClassVar[dict[str, Any]] = {"hidden_multiplier": 2.0}


def test_hidden_width_follows_the_option() -> None:
    module = get_registry().create("connector", "$name", {"hidden_multiplier": 0.5}).build(24, 40, 9)
    assert module[0].out_features == 20


def test_bad_options_are_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="greater than 0"):
        get_registry().create("connector", "$name", {"hidden_multiplier": 0})
''',
    spec='''model:
  connector: {name: $name, hidden_multiplier: 2.0}''',
)

VISION_TOWER = KindTemplate(
    hook="register_vision_towers", module="tower", cls="Tower", extras="[train]",
    summary="a vision tower: an image processor and an encoder that returns (B, N, D) features",
    options=(("image_size", "32", "input side in pixels (a multiple of patch_size)"),
             ("patch_size", "8", "patch side in pixels"), ("hidden_size", "32", "feature width"),
             ("num_layers", "2", "transformer layers"), ("num_heads", "2", "attention heads"),
             ("feature_layer", "-2", "hidden state used as features (-1: last)"),
             ("feature_strategy", "patch", "patch / cls_patch / full (this tower has no CLS token: all alike)"),
             ("final_norm", "false", "apply the final LayerNorm to the selected features")),
    component='''"""The $name vision tower: patch embedding plus a small transformer, randomly initialised.

Replace `build` with loading your pretrained encoder; keep `from_config`, which rebuilds the architecture from
`encoder.config` when a tinyllava checkpoint is loaded (the weights come from the checkpoint).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from tinyllava.api import ComponentOptions, FeatureSelectionOptions, VisionParts, VisionTower


class ${Cls}Options(FeatureSelectionOptions):
    image_size: int = Field(32, ge=8, description="input side in pixels")
    patch_size: int = Field(8, ge=1, description="patch side in pixels")
    hidden_size: int = Field(32, ge=8, description="feature width")
    num_layers: int = Field(2, ge=1, description="transformer layers")
    num_heads: int = Field(2, ge=1, description="attention heads")

    @model_validator(mode="after")
    def _fits(self) -> ${Cls}Options:
        if self.image_size % self.patch_size:
            raise ValueError("image_size must be a multiple of patch_size")
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be a multiple of num_heads")
        return self


def make_encoder(config: Any, feature_layer: int, final_norm: bool) -> Any:
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = config
            width, patch = config.hidden_size, config.patch_size
            self.num_tokens = (config.image_size // patch) ** 2
            self.hidden_size = width
            self.embed = nn.Conv2d(3, width, patch, stride=patch)
            self.position = nn.Parameter(torch.zeros(1, self.num_tokens, width))
            self.layers = nn.ModuleList(
                nn.TransformerEncoderLayer(width, config.num_heads, 2 * width, dropout=0.0, batch_first=True)
                for _ in range(config.num_layers))
            self.norm = nn.LayerNorm(width)
            total = config.num_layers
            self.feature_index = feature_layer if feature_layer >= 0 else total + 1 + feature_layer
            if not 0 <= self.feature_index <= total:
                raise ValueError(f"feature_layer {feature_layer} is out of range for {total} layers")

        def forward(self, pixel_values: Any) -> Any:
            x = self.embed(pixel_values.to(self.embed.weight.dtype)).flatten(2).transpose(1, 2) + self.position
            for layer in self.layers[: self.feature_index]:
                x = layer(x)
            return self.norm(x) if final_norm else x

    return Encoder()


class ${Cls}Tower(VisionTower):
    Options: ClassVar[type[ComponentOptions]] = ${Cls}Options
    has_cls_token: ClassVar[bool] = False

    def _processor(self, size: int) -> Any:
        from transformers import CLIPImageProcessor

        return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                  image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])

    def build(self) -> VisionParts:
        from transformers import PretrainedConfig

        opts: ${Cls}Options = self.options  # type: ignore[assignment]
        config = PretrainedConfig(image_size=opts.image_size, patch_size=opts.patch_size,
                                  hidden_size=opts.hidden_size, num_layers=opts.num_layers, num_heads=opts.num_heads)
        return VisionParts(make_encoder(config, opts.feature_layer, opts.final_norm), self._processor(opts.image_size))

    def from_config(self, vision_config: dict[str, Any], image_processor: Any) -> Any:
        from transformers import PretrainedConfig

        opts: ${Cls}Options = self.options  # type: ignore[assignment]
        return make_encoder(PretrainedConfig(**vision_config), opts.feature_layer, opts.final_norm)
''',
    test='''"""The $name tower through the public plugin path, and the vision-tower conformance kit."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from tinyllava.api import get_registry
from tinyllava.testing.conformance import VisionTowerConformance


class TestConformance(VisionTowerConformance):
    name: ClassVar[str] = "$name"
    options: ClassVar[dict[str, Any]] = {"image_size": 32, "patch_size": 8}
    image_size: ClassVar[int] = 32


def test_token_count_follows_the_patches() -> None:
    encoder, _ = get_registry().create("vision_tower", "$name", {"image_size": 32, "patch_size": 4}).build()
    assert encoder.num_tokens == 64


def test_sizes_must_fit() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="multiple of patch_size"):
        get_registry().create("vision_tower", "$name", {"image_size": 30, "patch_size": 8})
''',
    spec='''model:
  vision_tower: {name: $name, image_size: 32, patch_size: 8}''',
)

LLM = KindTemplate(
    hook="register_llms", module="llm", cls="LLM", extras="[train]",
    summary="an LLM family: transformers causal LMs chosen by config model_type (built on tinyllava.kits.hf_family)",
    options=(("source", "null", "hub id or local folder (pretrained)"),
             ("config", "null", "config fields for a random model; `model_type` picks the member"),
             ("tokenizer", "null", "tokenizer folder (default: source)"),
             ("gguf_file", "null", "GGUF file inside `source`"),
             ("tokenizer_vocab_size", "512", "with config: size of the local byte-level tokenizer"),
             ("tokenizer_corpus", "[]", "with config: extra text the local tokenizer learns from"),
             ("dtype", "float32", "float32, bfloat16 or float16"),
             ("attn_implementation", "null", "eager, sdpa ... (null: transformers' choice)")),
    component='''"""The $name LLM family: each config `model_type` it covers maps to one transformers class.

`tinyllava.kits.hf_family.FamilyLLM` does the work (pretrained folder, GGUF file or random config, the model_type
check before any weight is read); a family says which classes it covers and its tokenizer's special tokens.
"""

from __future__ import annotations

from typing import ClassVar

from tinyllava.kits.hf_family import FamilyLLM
from tinyllava.kits.tokenizers import LLAMA_SPEC, TokenizerSpec


class ${Cls}LLM(FamilyLLM):
    family: ClassVar[str] = "$name"
    architectures: ClassVar[dict[str, str]] = {"llama": "LlamaForCausalLM"}

    def tokenizer_spec(self, model_type: str) -> TokenizerSpec:
        """Special tokens of the tokenizer trained locally for random-init models (tests)."""
        return LLAMA_SPEC
''',
    test='''"""The $name LLM through the public plugin path, and the LLM conformance kit."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from tinyllava.api import get_registry
from tinyllava.testing.conformance import LLMConformance

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 2}


class TestConformance(LLMConformance):
    name: ClassVar[str] = "$name"
    options: ClassVar[dict[str, Any]] = {"config": TINY, "tokenizer_vocab_size": 300}


def test_other_model_types_are_refused() -> None:
    with pytest.raises(ValueError, match="model_type 'gpt2'"):
        get_registry().create("llm", "$name", {"config": {"model_type": "gpt2"}}).build()
''',
    spec='''model:
  llm: {name: $name, source: path/to/a/llama/folder}''',
)

CHAT_TEMPLATE = KindTemplate(
    hook="register_chat_templates", module="template", cls="Template", extras="[train]",
    summary="a chat template: conversations to token ids and labels (only answers trained)",
    options=(("system", "(the Factory prompt)", "class attribute: the system prompt"),),
    component='''"""The $name chat template: TinyLLaVA Factory's `{system} USER: {q} ASSISTANT: {a}{eos}`, BOS first.

Built on `tinyllava.kits.factory_templates.FactoryTemplate` (segments tokenised one by one, so labels never
drift); set `eos` to the text that ends an answer in your tokenizer, `add_bos` if prompts start with BOS.
"""

from __future__ import annotations

from typing import ClassVar

from tinyllava.kits.factory_templates import FactoryTemplate


class ${Cls}Template(FactoryTemplate):
    eos: ClassVar[str] = "</s>"
    add_bos: ClassVar[bool] = True
''',
    test='''"""The $name template through the public plugin path, and the chat-template conformance kit."""

from __future__ import annotations

from typing import Any, ClassVar

from tinyllava.api import IGNORE_INDEX, get_registry
from tinyllava.kits.factory_templates import FACTORY_PROMPT_CORPUS
from tinyllava.kits.tokenizers import build_byte_tokenizer
from tinyllava.testing.conformance import ChatTemplateConformance


def tokenizer() -> Any:
    return build_byte_tokenizer([*FACTORY_PROMPT_CORPUS, "What is this?", "A cat."], 300)


class TestConformance(ChatTemplateConformance):
    name: ClassVar[str] = "$name"

    def make_tokenizer(self) -> Any:
        return tokenizer()


def test_answers_end_with_eos_and_are_trained() -> None:
    tok = tokenizer()
    conversation = [{"from": "human", "value": "What is this?"}, {"from": "gpt", "value": "A cat."}]
    enc = get_registry().create("chat_template", "$name", {}).encode(conversation, tok)
    trained = [t for t, label in zip(enc.input_ids, enc.labels, strict=True) if label != IGNORE_INDEX]
    assert tok.decode(trained).strip() == "A cat.</s>" and enc.input_ids[0] == tok.bos_token_id
''',
    spec='''model:
  chat_template: {name: $name}''',
)

RECIPE = KindTemplate(
    hook="register_recipes", module="recipe", cls="Recipe", extras="[train]",
    summary="a training recipe: default stages, the tune modes it accepts, and what trains",
    options=(("connector_lr", "0.001", "learning rate of the connector in the alignment stage (> 0)"),),
    component='''"""The $name recipe: align the connector (everything else frozen), then fine-tune LLM and connector."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from tinyllava.api import ComponentOptions, Recipe


class ${Cls}Options(ComponentOptions):
    connector_lr: float = Field(1e-3, gt=0, description="learning rate of the connector in the alignment stage")


class ${Cls}Recipe(Recipe):
    Options: ClassVar[type[ComponentOptions]] = ${Cls}Options
    tune_modes: ClassVar[tuple[str, ...]] = ("frozen", "full")

    def default_stages(self) -> list[dict[str, Any]]:
        opts: ${Cls}Options = self.options  # type: ignore[assignment]
        return [
            {"name": "align", "lr": opts.connector_lr,
             "tune": {"llm": "frozen", "vision_tower": "frozen", "connector": "full"}},
            {"name": "finetune", "lr": 2e-5, "tune": {"llm": "full", "vision_tower": "frozen", "connector": "full"}},
        ]
''',
    test='''"""The $name recipe through the public plugin path, and the recipe conformance kit."""

from __future__ import annotations

from typing import Any, ClassVar

from tinyllava.api import get_registry
from tinyllava.testing.conformance import RecipeConformance


class TestConformance(RecipeConformance):
    name: ClassVar[str] = "$name"
    options: ClassVar[dict[str, Any]] = {"connector_lr": 5e-4}


def test_alignment_stage_uses_the_option() -> None:
    stages = get_registry().create("recipe", "$name", {"connector_lr": 5e-4}).default_stages()
    assert stages[0]["lr"] == 5e-4 and stages[0]["tune"]["llm"] == "frozen"
''',
    spec='''recipe: {name: $name, connector_lr: 0.001}''',
)

DATASET = KindTemplate(
    hook="register_datasets", module="dataset", cls="Dataset", extras="[train]",
    summary="a dataset: writes LLaVA-format data (JSON + images) into a cache folder",
    options=(("num_images", "8", "images (and conversations) to write (>= 1)"),
             ("image_size", "32", "image side in pixels (>= 8)"), ("seed", "0", "random seed")),
    component='''"""The $name dataset: single-colour pictures and a question about their colour, in LLaVA format.

`materialize` writes `data.json` (LLaVA records) and `images/` under a folder named after the options, and
reuses it when it is complete, so the same options never generate twice.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from tinyllava.api import ComponentOptions, Dataset

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}


class ${Cls}Options(ComponentOptions):
    num_images: int = Field(8, ge=1, description="images (and conversations) to write")
    image_size: int = Field(32, ge=8, description="image side in pixels")
    seed: int = Field(0, description="random seed")


class ${Cls}Dataset(Dataset):
    Options: ClassVar[type[ComponentOptions]] = ${Cls}Options

    def materialize(self, cache_root: Path) -> tuple[Path, Path]:
        from PIL import Image

        opts: ${Cls}Options = self.options  # type: ignore[assignment]
        key = hashlib.sha256(opts.model_dump_json().encode()).hexdigest()[:12]
        folder = Path(cache_root) / f"$name-{key}"
        data, images, done = folder / "data.json", folder / "images", folder / ".complete"
        if done.is_file():
            return data, images
        images.mkdir(parents=True, exist_ok=True)
        rng = random.Random(opts.seed)
        records = []
        for i in range(opts.num_images):
            colour = rng.choice(sorted(COLOURS))
            name = f"{i:05d}.png"
            Image.new("RGB", (opts.image_size, opts.image_size), COLOURS[colour]).save(images / name)
            records.append({"id": f"$name-{i}", "image": name, "conversations": [
                {"from": "human", "value": "<image>\\nWhat colour is the picture?"},
                {"from": "gpt", "value": f"It is {colour}."}]})
        data.write_text(json.dumps(records, indent=1))
        done.write_text("ok\\n")
        return data, images
''',
    test='''"""The $name dataset through the public plugin path, and the dataset conformance kit."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from tinyllava.api import get_registry
from tinyllava.testing.conformance import DatasetConformance


class TestConformance(DatasetConformance):
    name: ClassVar[str] = "$name"
    options: ClassVar[dict[str, Any]] = {"num_images": 4, "image_size": 16}


def test_every_answer_names_a_colour(tmp_path) -> None:
    data, _ = get_registry().create("dataset", "$name", {"num_images": 6}).materialize(tmp_path)
    answers = [r["conversations"][1]["value"] for r in json.loads(data.read_text())]
    assert len(answers) == 6 and all(a.startswith("It is ") for a in answers)
''',
    spec='''data:
  dataset: {name: $name, num_images: 200}''',
)

BENCHMARK = KindTemplate(
    hook="register_benchmarks", module="benchmark", cls="Benchmark", extras="",
    summary="a benchmark: reads its own files, builds prompts, scores the answers",
    options=(("suffix", '"\\nAnswer with one word."', "text appended to every question"),),
    component='''"""The $name benchmark: `questions.jsonl` ({"question_id", "image", "text", "answer"} per line) and the
images next to it; the score is the share of answers that contain the expected word (case-insensitive).

Replace the reading and scoring with the official benchmark's; keep the errors: a missing file is a
DataLayoutError that says what is missing and where to get it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from tinyllava.api import Benchmark, BenchmarkResult, ComponentOptions, DataLayoutError, EvalItem, ScoreTable

QUESTIONS = "questions.jsonl"


class ${Cls}Options(ComponentOptions):
    suffix: str = Field("\\nAnswer with one word.", description="text appended to every question")


class ${Cls}Benchmark(Benchmark):
    Options: ClassVar[type[ComponentOptions]] = ${Cls}Options

    def load_items(self, data_dir: Path | None, limit: int | None = None) -> list[EvalItem]:
        opts: ${Cls}Options = self.options  # type: ignore[assignment]
        if data_dir is None:
            raise DataLayoutError("$name needs its data folder: pass --data DIR (it holds questions.jsonl)")
        file = Path(data_dir) / QUESTIONS
        if not file.is_file():
            raise DataLayoutError(f"{file} is missing: the $name data folder holds {QUESTIONS} and its images")
        items = []
        for line in file.read_text().splitlines()[:limit]:
            row = json.loads(line)
            image = Path(data_dir) / row["image"]
            if not image.is_file():
                raise DataLayoutError(f"{image} is missing (question {row['question_id']})")
            items.append(EvalItem(str(row["question_id"]), row["text"] + opts.suffix, image=str(image),
                                  max_new_tokens=16, meta={"answer": row["answer"]}))
        return items

    def write_answers(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> list[Path]:
        path = Path(out_dir) / "${name}_answers.jsonl"
        path.write_text("".join(json.dumps({"question_id": i.item_id, "text": answers.get(i.item_id, "")}) + "\\n"
                                for i in items))
        return [path]

    def score(self, items: list[EvalItem], answers: dict[str, str], out_dir: Path) -> BenchmarkResult:
        right = [i.meta["answer"].lower() in answers.get(i.item_id, "").lower() for i in items]
        accuracy = 100.0 * sum(right) / len(right) if right else 0.0
        table = ScoreTable("$name", ["questions", "accuracy"], [[len(right), round(accuracy, 2)]])
        return BenchmarkResult({"accuracy": accuracy, "questions": len(right)}, [table])
''',
    test='''"""The $name benchmark through the public plugin path, and the benchmark conformance kit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from tinyllava.api import get_registry
from tinyllava.testing.conformance import BenchmarkConformance


def write_data(root: Path) -> Path:
    """A tiny copy of the benchmark's files: three questions and their images."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rows = [{"question_id": i, "image": f"{i}.png", "text": "What colour is it?", "answer": c}
            for i, c in enumerate(["red", "blue", "red"])]
    for row in rows:
        Image.new("RGB", (16, 16), row["answer"]).save(root / row["image"])
    (root / "questions.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in rows))
    return root


class TestConformance(BenchmarkConformance):
    name: ClassVar[str] = "$name"
    options: ClassVar[dict[str, Any]] = {}

    def make_data(self, root: Path) -> Path:
        return write_data(root)

    def answers(self, items: list[Any]) -> dict[str, str]:
        return {item.item_id: "Red" for item in items}


def test_accuracy(tmp_path) -> None:
    bench = get_registry().create("benchmark", "$name", {})
    items = bench.load_items(write_data(tmp_path / "data"))
    result = bench.score(items, {"0": "Red.", "1": "green", "2": "it is red"}, tmp_path)
    assert round(result.metrics["accuracy"], 2) == 66.67
''',
    spec='''tinyllava eval --model runs/my-run/latest --benchmark $name --data path/to/$name''',
)

KIND_TEMPLATES: dict[str, KindTemplate] = {
    "llm": LLM, "vision_tower": VISION_TOWER, "connector": CONNECTOR, "chat_template": CHAT_TEMPLATE,
    "recipe": RECIPE, "dataset": DATASET, "benchmark": BENCHMARK,
}

ENTRY = '''"""Entry module of the $name plugin: registration only. Keep it import-light: no torch, no transformers."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "$api"


@hookimpl
def $hook() -> dict[str, str]:
    return {"$name": "$package.$module:$Cls$cls"}
'''

PYPROJECT = '''[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "tinyllava plugin: $summary."
readme = "README.md"
requires-python = ">=3.10"
license = "Apache-2.0"
classifiers = [
  "Programming Language :: Python :: 3",
  "Topic :: Scientific/Engineering :: Artificial Intelligence",
]
dependencies = ["tinyllava$extras>=$lower,<$upper"]

[project.optional-dependencies]
test = ["pytest>=8"]

[project.entry-points."tinyllava.plugins"]
$name = "$package"

[tool.setuptools.packages.find]
include = ["$package*"]
'''

README = '''# $dist

A tinyllava plugin: $summary. It provides the $kind `$name`.

## Install

```bash
pip install -e .            # from this folder, into the environment that has tinyllava
tinyllava plugins check $name
tinyllava components --kind $kind
```

## Options

| option | default | meaning |
|---|---|---|
$table

## Use it

$use

## Test

```bash
pip install -e .        # first: the tests find the component through its entry point
python -m pytest tests
```

The tests run tinyllava's conformance kit for this kind (`tinyllava.testing.conformance`) and the plugin's own
checks. Publish with `python -m build` and upload the files in `dist/`.
'''


class ScaffoldError(ValueError):
    """A bad kind, name or target folder; the message says what to change."""


def package_name(name: str) -> str:
    return "tinyllava_plugin_" + name.replace("-", "_")


def scaffold(kind: str, name: str, directory: Path) -> Path:
    """Write the distribution `tinyllava-plugin-<name>` for a `kind` component under `directory`; its folder."""
    if kind not in KIND_TEMPLATES:
        raise ScaffoldError(f"unknown kind {kind!r}; kinds are {', '.join(KIND_TEMPLATES)}")
    if not NAME_RE.match(name):
        raise ScaffoldError(f"plugin name {name!r}: use lower-case letters and digits, words joined by - or _ "
                            f"(e.g. my-connector)")
    tmpl = KIND_TEMPLATES[kind]
    dist = f"tinyllava-plugin-{name.replace('_', '-')}"
    root = Path(directory) / dist
    if root.exists():
        raise ScaffoldError(f"{root} already exists; pick another NAME or --dir")
    package = package_name(name)
    major, minor = (int(p) for p in __version__.split(".")[:2])
    from tinyllava.api import PLUGIN_API_VERSION

    values = {
        "name": name, "kind": kind, "dist": dist, "package": package, "module": tmpl.module, "cls": tmpl.cls,
        "Cls": "".join(part.capitalize() for part in re.split(r"[-_]", name)), "hook": tmpl.hook,
        "summary": tmpl.summary, "extras": tmpl.extras, "lower": f"{major}.{minor}", "upper": f"{major}.{minor + 1}",
        "api": PLUGIN_API_VERSION,
    }
    values["table"] = "\n".join(f"| `{o}` | `{d}` | {m} |" for o, d, m in tmpl.options)
    values["spec"] = Template(tmpl.spec).substitute(values)
    values["use"] = (f"Evaluate a checkpoint with it:\n\n```bash\n{values['spec']}\n```" if kind == "benchmark"
                     else f"In a run spec:\n\n```yaml\n{values['spec']}\n```")
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"{package}/__init__.py": ENTRY,
        f"{package}/{tmpl.module}.py": tmpl.component,
        f"tests/test_{package.removeprefix('tinyllava_plugin_')}.py": tmpl.test,
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(text).substitute(values))
    return root
