"""`tinyllava import --from tinyllava-factory`: tiny TinyLLaVA Factory checkpoints in both layouts its training
writes, built here with plain transformers models under the original's key names and config, must give the
same fp32 logits and greedy tokens as an independent re-implementation of the original's forward (its prompt,
its image preprocessing, its feature selection, its splice)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from torch import nn

from tinyllava.checkpoint.load import load_checkpoint, read_manifest
from tinyllava.constants import IMAGE_TOKEN_INDEX
from tinyllava.data.images import preprocess_image
from tinyllava.interop.import_checkpoint import import_checkpoint
from tinyllava.interop.import_common import ImportFailed

SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the user's questions.")
QUESTION = "What shape is the red object?"
CORPUS = [SYSTEM, "USER: ", " ASSISTANT: ", QUESTION, "red circle square blue"]

# LLM family -> (transformers config class, model class, special tokens, bos, eos, unk, pad, adds bos, template eos)
FAMILIES: dict[str, dict[str, Any]] = {
    "llama": dict(cfg="LlamaConfig", cls="LlamaForCausalLM", special=("<unk>", "<s>", "</s>"), bos="<s>",
                  eos="</s>", unk="<unk>", pad=None, add_bos=True, stop="</s>"),
    "qwen2": dict(cfg="Qwen2Config", cls="Qwen2ForCausalLM", special=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
                  bos=None, eos="<|endoftext|>", unk=None, pad="<|endoftext|>", add_bos=False, stop="<|endoftext|>"),
    "qwen2_instruct": dict(cfg="Qwen2Config", cls="Qwen2ForCausalLM",
                           special=("<|endoftext|>", "<|im_start|>", "<|im_end|>"), bos=None, eos="<|im_end|>",
                           unk=None, pad="<|endoftext|>", add_bos=False, stop="<|im_end|>"),
    "gemma": dict(cfg="GemmaConfig", cls="GemmaForCausalLM", special=("<pad>", "<eos>", "<bos>", "<unk>"),
                  bos="<bos>", eos="<eos>", unk="<unk>", pad="<pad>", add_bos=True, stop="<eos>"),
    "phi": dict(cfg="PhiConfig", cls="PhiForCausalLM", special=("<|endoftext|>",), bos="<|endoftext|>",
                eos="<|endoftext|>", unk="<|endoftext|>", pad=None, add_bos=False, stop="<|endoftext|>"),
    "openelm": dict(cfg="OpenELMConfig", cls="OpenELMForCausalLM", special=("<unk>", "<s>", "</s>"), bos="<s>",
                    eos="</s>", unk="<unk>", pad=None, add_bos=True, stop="</s>"),
    "stablelm": dict(cfg="StableLmConfig", cls="StableLmForCausalLM",
                     special=("<|endoftext|>", "<|im_start|>", "<|im_end|>"), bos="<|endoftext|>",
                     eos="<|endoftext|>", unk=None, pad="<|endoftext|>", add_bos=False, stop="<|endoftext|>"),
}
TOWERS = {"clip": ("CLIPVisionConfig", "CLIPVisionModel"), "siglip": ("SiglipVisionConfig", "SiglipVisionModel")}
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def make_tokenizer(family: str) -> Any:
    from tinyllava.kits.tokenizers import TokenizerSpec, build_family_tokenizer

    f = FAMILIES[family]
    spec = TokenizerSpec(special=f["special"], bos=f["bos"], eos=f["eos"], unk=f["unk"], pad=f["pad"],
                         add_bos=f["add_bos"])
    return build_family_tokenizer(spec, CORPUS, 360)


def make_lm(family: str, tokenizer: Any, tie: bool) -> nn.Module:
    import transformers

    f = FAMILIES[family]
    if family == "openelm":  # the original vendors OpenELM; so does our openelm plugin
        from tinyllava_plugin_openelm.modeling_openelm import OpenELMConfig, OpenELMForCausalLM

        config = OpenELMConfig(vocab_size=len(tokenizer), model_dim=32, head_dim=8, num_transformer_layers=2,
                               num_gqa_groups=2, qkv_multipliers=[0.5, 1.0], ffn_multipliers=[0.5, 4.0],
                               ffn_dim_divisor=32, normalize_qk_projections=True, share_input_output_layers=tie,
                               bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
        return OpenELMForCausalLM(config).eval()
    fields = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                  tie_word_embeddings=tie, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                  pad_token_id=tokenizer.pad_token_id)
    if family == "gemma":
        fields["head_dim"] = 16
    config = getattr(transformers, f["cfg"])(**fields)
    return getattr(transformers, f["cls"])(config).eval()


def make_tower(kind: str) -> nn.Module:
    import transformers

    cfg_cls, cls = TOWERS[kind]
    config = getattr(transformers, cfg_cls)(hidden_size=24, intermediate_size=48, num_hidden_layers=3,
                                            num_attention_heads=2, image_size=32, patch_size=8)
    return getattr(transformers, cls)(config).eval()


def hub_processor(kind: str) -> Any:
    """What the original loads with `from_pretrained(<hub id>)`, at this tiny size."""
    from transformers import CLIPImageProcessor, SiglipImageProcessor

    if kind == "clip":
        return CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                  image_mean=CLIP_MEAN, image_std=CLIP_STD)
    return SiglipImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3)


def t4_tower_keys(tower: nn.Module) -> dict[str, torch.Tensor]:
    """The vision model's parameters as transformers 4 named them (the original's pinned version): `vision_model.*`."""
    return {("vision_model." + k if not k.startswith("vision_model.") else k): v
            for k, v in tower.named_parameters()}


class Factory:
    """A tiny TinyLLaVA Factory model: the original's three parts and its config fields."""

    def __init__(self, family: str, tower: str, *, depth: int = 2, layer: int = -2, strategy: str = "patch",
                 aspect: str = "square", tie: bool = False, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.family, self.tower_kind = family, tower
        self.tokenizer = make_tokenizer(family)
        self.lm = make_lm(family, self.tokenizer, tie)
        self.tower = make_tower(tower)
        vh, h = self.tower.config.hidden_size, self.lm.get_input_embeddings().weight.shape[1]
        layers: list[nn.Module] = [nn.Linear(vh, h)]
        for _ in range(depth - 1):
            layers += [nn.GELU(), nn.Linear(h, h)]
        # the original's `linear` connector is a bare nn.Linear (keys _connector.weight / _connector.bias)
        self.connector = (nn.Sequential(*layers) if depth else nn.Linear(vh, h)).eval()
        self.connector_type = f"mlp{depth}x_gelu" if depth else "linear"
        self.layer, self.strategy, self.aspect = layer, strategy, aspect
        self.processor = hub_processor(tower)

    def config(self) -> dict[str, Any]:
        vision = {**self.tower.config.to_dict(), "model_name_or_path": f"google/{self.tower_kind}-tiny",
                  "model_name_or_path2": ""}
        return {
            "architectures": ["TinyLlavaForConditionalGeneration"], "model_type": "tinyllava",
            "llm_model_name_or_path": f"someone/{self.family}-tiny", "tokenizer_name_or_path": None,
            "vision_model_name_or_path": f"google/{self.tower_kind}-tiny", "vision_model_name_or_path2": "",
            "connector_type": self.connector_type, "text_config": self.lm.config.to_dict(), "vision_config": vision,
            "hidden_size": self.connector_width(), "vision_hidden_size": self.tower.config.hidden_size,
            "vision_feature_layer": self.layer, "vision_feature_select_strategy": self.strategy,
            "image_aspect_ratio": self.aspect, "tokenizer_model_max_length": 256, "tokenizer_padding_side": "right",
            "ignore_index": -100, "image_token_index": -200, "use_cache": True, "tune_type_llm": "frozen",
        }

    def connector_width(self) -> int:
        return int(self.lm.get_input_embeddings().weight.shape[1])

    def save_full(self, out: Path, *, pickle: bool = False) -> Path:
        """The finetune layout: one weights file with the original's module names."""
        from safetensors.torch import save_file

        out.mkdir(parents=True, exist_ok=True)
        state = {f"language_model.{k}": v for k, v in self.lm.named_parameters()}  # tied lm_head stored once
        state.update({f"vision_tower._vision_tower.{k}": v for k, v in t4_tower_keys(self.tower).items()})
        state.update({f"connector._connector.{k}": v for k, v in self.connector.named_parameters()})
        state = {k: v.detach().clone().contiguous() for k, v in state.items()}
        if pickle:
            torch.save(state, out / "pytorch_model.bin")
        else:
            save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
        self._save_common(out)
        return out

    def save_components(self, out: Path) -> Path:
        """The pretrain layout: language_model/, vision_tower/, connector/ with their parameters pickled."""
        out.mkdir(parents=True, exist_ok=True)
        for name, state in (("language_model", dict(self.lm.named_parameters())),
                            ("vision_tower", t4_tower_keys(self.tower)),
                            ("connector", {f"_connector.{k}": v for k, v in self.connector.named_parameters()})):
            (out / name).mkdir()
            torch.save({k: v.detach().clone() for k, v in state.items()}, out / name / "pytorch_model.bin")
        self.lm.config.save_pretrained(out / "language_model")
        self.tower.config.save_pretrained(out / "vision_tower")
        self._save_common(out)
        return out

    def _save_common(self, out: Path) -> None:
        (out / "config.json").write_text(json.dumps(self.config(), indent=2))
        self.tokenizer.save_pretrained(out)

    # -- the original's forward, re-implemented independently --------------------------------------
    def prompt_ids(self, question: str) -> list[int]:
        """`{system} USER: <image>\\n{q} ASSISTANT:`, each side of `<image>` tokenised alone, one BOS kept."""
        prompt = f"{SYSTEM} USER: <image>\n{question} ASSISTANT:"
        before, after = prompt.split("<image>")
        first = self.tokenizer(before).input_ids
        second = self.tokenizer(after).input_ids
        bos = self.tokenizer.bos_token_id
        if first and first[0] == bos and bos is not None:
            second = second[1:] if second and second[0] == bos else second
        return [*first, IMAGE_TOKEN_INDEX, *second]

    def pixels(self, image: Image.Image) -> torch.Tensor:
        if self.aspect == "pad":
            width, height = image.size
            side = max(width, height)
            fill = tuple(int(m * 255) for m in self.processor.image_mean)
            canvas = Image.new(image.mode, (side, side), fill)
            canvas.paste(image, ((side - width) // 2, (side - height) // 2))
            image = canvas
        return self.processor(image, return_tensors="pt")["pixel_values"]

    @torch.no_grad()
    def embeds(self, ids: list[int], image: Image.Image) -> torch.Tensor:
        hidden = self.tower(self.pixels(image), output_hidden_states=True).hidden_states[self.layer]
        if self.strategy == "patch":
            hidden = hidden[:, 1:]
        features = self.connector(hidden)[0]
        cut = ids.index(IMAGE_TOKEN_INDEX)
        embed = self.lm.get_input_embeddings()
        parts = [embed(torch.tensor(ids[:cut])), features, embed(torch.tensor(ids[cut + 1:]))]
        return torch.cat(parts).unsqueeze(0)

    @torch.no_grad()
    def logits(self, ids: list[int], image: Image.Image) -> torch.Tensor:
        return self.lm(inputs_embeds=self.embeds(ids, image)).logits[0]

    @torch.no_grad()
    def greedy(self, ids: list[int], image: Image.Image, stop: int, new: int = 8) -> list[int]:
        embeds = self.embeds(ids, image)
        out = self.lm.generate(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
                               max_new_tokens=new, do_sample=False, eos_token_id=stop,
                               pad_token_id=self.tokenizer.pad_token_id or stop)
        return out[0].tolist()


def sample_image() -> Image.Image:
    torch.manual_seed(123)
    data = (torch.rand(28, 44, 3) * 255).to(torch.uint8).numpy()  # not square: pad and crop both matter
    return Image.fromarray(data)


def ours(out: Path, question: str, image: Image.Image, stop: int, new: int = 8) -> tuple[list[int], torch.Tensor,
                                                                                      list[int]]:
    loaded = load_checkpoint(out)
    conversation = [{"from": "human", "value": f"<image>\n{question}"}]
    ids = loaded.template.generation_prompt(conversation, loaded.tokenizer)
    expanded: list[int] = []
    for tok in ids:
        expanded += [tok] * loaded.model.config.image_seq_len if tok == IMAGE_TOKEN_INDEX else [tok]
    pixels = preprocess_image(image, loaded.image_processor, loaded.manifest["image_preprocess"]).unsqueeze(0)
    input_ids = torch.tensor([expanded])
    with torch.no_grad():
        logits = loaded.model(input_ids=input_ids, pixel_values=pixels).logits[0]
        gen = loaded.model.generate(input_ids, pixel_values=pixels, max_new_tokens=new, do_sample=False,
                                    eos_token_id=stop, pad_token_id=loaded.tokenizer.pad_token_id or stop)
    return ids, logits, gen[0].tolist()


# family, tower, layout, depth, layer, strategy, aspect, tie
MATRIX = [
    ("llama", "clip", "full", 2, -2, "patch", "square", False),
    ("llama", "clip", "components", 2, -1, "cls_patch", "pad", True),
    ("llama", "siglip", "full", 3, -2, "patch", "pad", False),
    ("qwen2", "siglip", "components", 2, -2, "patch", "square", True),
    ("qwen2_instruct", "clip", "full", 1, -1, "patch", "square", False),
    ("gemma", "siglip", "full", 2, -1, "cls_patch", "square", True),
    ("phi", "clip", "components", 2, -2, "patch", "square", False),
    ("stablelm", "siglip", "components", 0, -2, "cls_patch", "square", False),
    ("openelm", "clip", "full", 2, -2, "patch", "square", True),
]
TEMPLATE = {"llama": "llama", "qwen2": "qwen2_base", "qwen2_instruct": "qwen2_instruct", "gemma": "gemma",
            "phi": "phi", "stablelm": "phi", "openelm": "llama"}


@pytest.mark.parametrize(("family", "tower", "layout", "depth", "layer", "strategy", "aspect", "tie"), MATRIX,
                         ids=["-".join(map(str, row)) for row in MATRIX])
def test_factory_import_matches_the_original(tmp_path: Path, family: str, tower: str, layout: str, depth: int,
                                             layer: int, strategy: str, aspect: str, tie: bool) -> None:
    factory = Factory(family, tower, depth=depth, layer=layer, strategy=strategy, aspect=aspect, tie=tie)
    if aspect == "pad":  # the core letterboxes with round(mean*255), the original with int(): see the report
        factory.processor.image_mean = [0.0, 0.0, 0.0]
        factory.processor.save_pretrained(tmp_path / "proc")
    src = factory.save_full(tmp_path / "src") if layout == "full" else factory.save_components(tmp_path / "src")
    proc = tmp_path / "proc" if aspect == "pad" else None
    out = import_checkpoint("tinyllava-factory", src, tmp_path / "out", image_processor=proc)

    manifest = read_manifest(out)
    comps = manifest["components"]
    assert comps["chat_template"]["name"] == TEMPLATE[family]
    connector = {"name": "mlp", "options": {"depth": depth, "position_embedding": "none"}} if depth else \
        {"name": "linear", "options": {"bias": True}}
    assert comps["connector"] == connector
    assert comps["vision_tower"]["name"] == tower
    assert comps["vision_tower"]["options"]["feature_layer"] == layer
    assert manifest["image_preprocess"] == aspect
    assert manifest["imported_from"]["format"] == "tinyllava-factory"
    assert manifest["imported_from"]["hash"].startswith("sha256:")

    image = sample_image()
    stop = factory.tokenizer.convert_tokens_to_ids(FAMILIES[family]["stop"])
    ref_ids = factory.prompt_ids(QUESTION)
    ids, logits, gen = ours(out, QUESTION, image, stop)
    assert ids == ref_ids  # our template reproduces the original's prompt token for token
    expanded = [t for t in ref_ids if t != IMAGE_TOKEN_INDEX]
    ref_logits = factory.logits(ref_ids, image)
    assert logits.shape[0] == ref_logits.shape[0] > len(expanded)
    diff = (logits - ref_logits).abs().max().item()
    print(f"factory {family}/{tower}/{layout}: max |logit diff| = {diff:.2e}")
    assert diff <= 1e-5
    assert gen == factory.greedy(ref_ids, image, stop)


def test_pickled_full_layout_and_default_image_processor(tmp_path: Path) -> None:
    """A full layout saved as pytorch_model.bin, no processor beside it: the tower family's default is used."""
    factory = Factory("llama", "clip")
    src = factory.save_full(tmp_path / "src", pickle=True)
    out = import_checkpoint("tinyllava-factory", src, tmp_path / "out")
    notes = read_manifest(out)["imported_from"]["notes"]
    assert any("no image processor in the source" in n for n in notes)
    image = sample_image()
    ids, logits, _ = ours(out, QUESTION, image, factory.tokenizer.eos_token_id)
    assert (logits - factory.logits(ids, image)).abs().max().item() <= 1e-5


def test_sharded_weights_and_tokenizer_option(tmp_path: Path) -> None:
    """A full layout in two safetensors shards with an index, and no tokenizer beside it (--tokenizer)."""
    from safetensors.torch import load_file, save_file

    factory = Factory("qwen2", "clip")
    src = factory.save_full(tmp_path / "src")
    state = load_file(str(src / "model.safetensors"))
    (src / "model.safetensors").unlink()
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, part in shards.items():
        save_file({k: state[k] for k in part}, str(src / name))
    index = {"metadata": {}, "weight_map": {k: name for name, part in shards.items() for k in part}}
    (src / "model.safetensors.index.json").write_text(json.dumps(index))
    factory.tokenizer.save_pretrained(tmp_path / "tok")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (src / name).unlink()
    with pytest.raises(ImportFailed, match="pass --tokenizer DIR"):
        import_checkpoint("tinyllava-factory", src, tmp_path / "out")
    out = import_checkpoint("tinyllava-factory", src, tmp_path / "out2", tokenizer=tmp_path / "tok")
    assert len(read_manifest(out)["imported_from"]["files"]) == 3  # config.json and both shards
    image = sample_image()
    ids, logits, _ = ours(out, QUESTION, image, factory.tokenizer.eos_token_id)
    assert (logits - factory.logits(ids, image)).abs().max().item() <= 1e-5


class Evil:
    def __reduce__(self) -> tuple:
        return (print, ("this must never run",))


def test_pickle_with_a_non_tensor_object_is_refused(tmp_path: Path) -> None:
    factory = Factory("llama", "clip")
    src = factory.save_components(tmp_path / "src")
    torch.save({"_connector.0.weight": Evil()}, src / "connector" / "pytorch_model.bin")
    with pytest.raises(ImportFailed, match="refused to read this pickle"):
        import_checkpoint("tinyllava-factory", src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_layouts_and_connectors_are_refused(tmp_path: Path) -> None:
    factory = Factory("llama", "clip")
    src = factory.save_full(tmp_path / "src")
    (src / "model.safetensors").rename(src / "weights.ckpt")
    with pytest.raises(ImportFailed, match="unknown TinyLLaVA Factory layout"):
        import_checkpoint("tinyllava-factory", src, tmp_path / "out")
    with pytest.raises(ImportFailed, match="is not a folder"):
        import_checkpoint("tinyllava-factory", tmp_path / "nowhere", tmp_path / "out2")
    src2 = factory.save_full(tmp_path / "src2")
    config = json.loads((src2 / "config.json").read_text())
    (src2 / "config.json").write_text(json.dumps({**config, "connector_type": "resampler"}))
    with pytest.raises(ImportFailed, match="connector_type 'resampler' cannot be imported"):
        import_checkpoint("tinyllava-factory", src2, tmp_path / "out3")
    (src2 / "config.json").write_text(json.dumps({**config, "text_config": {**config["text_config"],
                                                                              "model_type": "mamba"}}))
    with pytest.raises(ImportFailed, match="no installed llm plugin adopts LLM model_type 'mamba'"):
        import_checkpoint("tinyllava-factory", src2, tmp_path / "out4")
    (src2 / "adapter_config.json").write_text("{}")
    with pytest.raises(ImportFailed, match="LoRA checkpoint"):
        import_checkpoint("tinyllava-factory", src2, tmp_path / "out5")


def test_cli_import_and_its_errors(tmp_path: Path) -> None:
    """`tinyllava import` as a user runs it: a summary on success, one clear line (no traceback) on a bad source."""
    from typer.testing import CliRunner

    from tinyllava_cli.app import app

    src = Factory("llama", "clip").save_full(tmp_path / "src")
    runner = CliRunner()
    ok = runner.invoke(app, ["import", "--from", "tinyllava-factory", str(src), "--output", str(tmp_path / "o")])
    assert ok.exit_code == 0, ok.output
    assert "imported tinyllava-factory" in ok.output and "chat_template llama" in ok.output
    assert read_manifest(tmp_path / "o")["imported_from"]["path"] == str(src.resolve())
    bad = runner.invoke(app, ["import", "--from", "hf-llava", str(src), "--output", str(tmp_path / "p")])
    assert bad.exit_code == 2
    assert "use --from tinyllava-factory" in bad.output and "Traceback" not in bad.output
    with pytest.raises(ImportFailed, match="already exists and is not empty"):
        import_checkpoint("tinyllava-factory", src, tmp_path / "o")


@pytest.mark.parametrize(("template", "eos"), [("llama", "</s>"), ("qwen2_base", "<|endoftext|>"),
                                               ("qwen2_instruct", "<|im_end|>"), ("gemma", "<eos>"),
                                               ("phi", "<|endoftext|>")])
def test_templates_render_the_originals_training_text(template: str, eos: str) -> None:
    """The template an import picks writes what the original trained on: system once, image first, no space
    after an answer's end token, no trailing space after the last `ASSISTANT:`."""
    from tinyllava.plugins.registry import get_registry

    tmpl = get_registry().create("chat_template", template, {})
    conversation = [{"from": "human", "value": "What is it? <image>"}, {"from": "gpt", "value": "A circle."},
                    {"from": "human", "value": "Colour?"}, {"from": "gpt", "value": "Red."}]
    assert tmpl.render(conversation) == (f"{SYSTEM} USER: <image>\nWhat is it? ASSISTANT: A circle.{eos}"
                                         f"USER: Colour? ASSISTANT: Red.{eos}")
    assert tmpl.render(conversation[:3], add_generation_prompt=True).endswith(f"{eos}USER: Colour? ASSISTANT:")
