"""`tinyllava export --to hf-llava`: the exported folder is plain transformers LLaVA and computes what ours does.

Every supported combination (a parametrised matrix of tiny random models) is exported and loaded back with
`LlavaForConditionalGeneration` / `AutoProcessor`; prompts are built through the exported processor itself
(chat template, image-token expansion, image preprocessing) and compared with the checkpoint's own template,
preprocessing, logits and greedy generation. Combinations LLaVA cannot express are refused before anything
is written.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from tinyllava.constants import IMAGE_TOKEN_INDEX
from tinyllava.testing.timeouts import SUBPROCESS_TIMEOUT_S
from tinyllava.testing.tiny import TINY_MODEL

LAYERS = {"num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2, "hidden_size": 32,
          "intermediate_size": 64, "max_position_embeddings": 256}
CORPUS = ["What is in the picture?", "Describe it.", "A red circle on the left.", "colour square"]
LLMS: dict[str, dict[str, Any]] = {
    "llama": TINY_MODEL["llm"],
    "qwen2": {"name": "qwen", "config": {"model_type": "qwen2", **LAYERS}, "tokenizer_corpus": CORPUS},
    "gemma": {"name": "gemma", "config": {"model_type": "gemma", **LAYERS, "head_dim": 16},
              "tokenizer_corpus": CORPUS},
    "stablelm": {"name": "stablelm", "config": {"model_type": "stablelm", **LAYERS}, "tokenizer_corpus": CORPUS},
    # Phi-3's tokenizer prepends BOS, which the `phi` template has not: the export switches it off
    "phi3": {"name": "phi", "config": {"model_type": "phi3", **LAYERS}, "tokenizer_corpus": CORPUS},
    "gemma3_text": {"name": "gemma", "config": {"model_type": "gemma3_text", **LAYERS, "head_dim": 16},
                    "tokenizer_corpus": CORPUS},
}
TEMPLATES = {"llama": "llama", "qwen2": "qwen2_base", "gemma": "gemma", "stablelm": "phi", "phi3": "phi",
             "gemma3_text": "gemma"}
TOWER_CONFIG = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
                "image_size": 32, "patch_size": 8}
# means whose padding colour is the same under round() and int() (the CLIP mean case has its own test)
TOWERS: dict[str, dict[str, Any]] = {
    "clip": {"name": "clip", "config": TOWER_CONFIG, "image_mean": [0.0, 0.0, 0.0], "image_std": [0.5, 0.5, 0.5]},
    "siglip": {"name": "siglip", "config": TOWER_CONFIG, "image_mean": [0.4, 0.2, 0.6],
               "image_std": [0.5, 0.25, 0.5]},
    "dinov2": {"name": "dinov2", "config": TOWER_CONFIG, "image_mean": [0.4, 0.2, 0.6]},
}
CONVERSATIONS = [
    [{"from": "human", "value": "What is in the picture?\n<image>"}],
    [{"from": "human", "value": "<image> Describe it."}, {"from": "gpt", "value": "A red circle on the left."},
     {"from": "human", "value": "And the colour of the square?"}],
    [{"from": "human", "value": "Describe it."}],
]
# (llm, tower, feature_layer, feature_strategy, image_preprocess): every value of every axis, twice or more
MATRIX = [
    ("llama", "clip", -2, "patch", "square"),
    ("llama", "clip", -1, "cls_patch", "pad"),
    ("llama", "siglip", -2, "cls_patch", "pad"),
    ("llama", "siglip", -1, "drop_first_patch", "square"),
    ("qwen2", "clip", -1, "patch", "pad"),
    ("qwen2", "clip", -2, "cls_patch", "square"),
    ("qwen2", "siglip", -2, "patch", "square"),
    ("qwen2", "siglip", -1, "drop_first_patch", "pad"),
    ("gemma", "clip", -2, "patch", "pad"),
    ("stablelm", "siglip", -2, "patch", "square"),
    ("phi3", "clip", -1, "patch", "square"),
    ("gemma3_text", "siglip", -1, "cls_patch", "pad"),
    ("qwen2", "dinov2", -1, "cls_patch", "pad"),
    ("llama", "dinov2", -2, "patch", "square"),
]
MAX_DIFFS: dict[str, float] = {}


def model_spec(llm: str = "llama", tower: str = "clip", layer: int = -2, strategy: str = "patch",
               preprocess: str = "square", **replace: Any) -> dict[str, Any]:
    vision = copy.deepcopy(TOWERS[tower])
    vision["feature_layer"] = layer
    if strategy == "drop_first_patch":
        vision.update(feature_strategy="patch", drop_first_patch=True)
    else:
        vision["feature_strategy"] = strategy
    spec = {**copy.deepcopy(TINY_MODEL), "llm": copy.deepcopy(LLMS[llm]), "vision_tower": vision,
            "chat_template": {"name": TEMPLATES[llm]}, "image_preprocess": preprocess}
    spec.update(replace)
    return spec


def make_checkpoint(folder: Path, spec: dict[str, Any], seed: int = 0) -> Path:
    from tinyllava.checkpoint.save import save_checkpoint
    from tinyllava.model.build import build_fresh
    from tinyllava.plugins.registry import get_registry
    from tinyllava.spec.runspec import ModelSpec

    torch.manual_seed(seed)
    model_spec_ = ModelSpec.model_validate(spec)
    built = build_fresh(get_registry(), model_spec_)
    template = spec.get("chat_template") or {"name": "llama"}
    save_checkpoint(folder, built.model, built.tokenizer, built.image_processor,
                    chat_template={"name": template["name"], "options": {k: v for k, v in template.items()
                                                                        if k != "name"}},
                    spec={"model": spec}, stage="test")
    return folder


def picture(width: int = 41, height: int = 27) -> Any:
    from tinyllava.interop.export_hf_llava import probe_image

    return probe_image(width, height).rotate(90, expand=True)  # another picture than the exporter's probe


def ours_prompt(loaded: Any, conversation: list[dict[str, str]]) -> list[int]:
    return loaded.template.generation_prompt(conversation, loaded.tokenizer)


def hf_inputs(processor: Any, conversation: list[dict[str, str]], image: Any) -> tuple[str, Any]:
    from tinyllava.interop.export_jinja import to_hf_messages

    text = processor.apply_chat_template(to_hf_messages(conversation), add_generation_prompt=True)
    has_image = any("<image>" in t["value"] for t in conversation)
    return text, processor(text=text, images=[image] if has_image else None, return_tensors="pt")


def collapse(ids: list[int], image_token_id: int, expected: int) -> list[int]:
    from tinyllava.interop.export_hf_llava import collapse_image_tokens

    return collapse_image_tokens(ids, image_token_id, expected)


def compare(ckpt: Path, out: Path, conversations: list[list[dict[str, str]]] = CONVERSATIONS) -> float:
    """Ids, pixels, logits (fp32, original vocabulary) and greedy generations of ours vs the export."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from tinyllava.checkpoint.load import load_checkpoint
    from tinyllava.data.images import preprocess_image

    loaded = load_checkpoint(ckpt)
    llava = LlavaForConditionalGeneration.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    config = llava.config
    seq = int(loaded.model.config.image_seq_len)
    vocab = loaded.model.get_input_embeddings().weight.shape[0]
    image = picture()
    assert config.image_seq_length == seq
    ours_pixels = preprocess_image(image, loaded.image_processor, loaded.manifest["image_preprocess"])
    theirs_pixels = processor.image_processor(images=image, return_tensors="pt")["pixel_values"][0]
    assert torch.equal(ours_pixels, theirs_pixels)
    worst = 0.0
    for conversation in conversations:
        ours_ids = ours_prompt(loaded, conversation)
        text, inputs = hf_inputs(processor, conversation, image)
        theirs = collapse(inputs["input_ids"][0].tolist(), config.image_token_id, seq)
        assert theirs == ours_ids, text
        expanded: list[int] = []
        for tok in ours_ids:
            expanded += [IMAGE_TOKEN_INDEX] * seq if tok == IMAGE_TOKEN_INDEX else [tok]
        pixels = ours_pixels.unsqueeze(0) if IMAGE_TOKEN_INDEX in ours_ids else None
        with torch.no_grad():
            ours_logits = loaded.model(input_ids=torch.tensor([expanded]), pixel_values=pixels).logits
            theirs_logits = llava(**inputs).logits
        worst = max(worst, float((ours_logits - theirs_logits[..., :vocab]).abs().max()))
        stop = loaded.template.stop_token_ids(loaded.tokenizer)
        ours_new = loaded.model.generate(torch.tensor([expanded]), pixel_values=pixels, max_new_tokens=6,
                                         do_sample=False, eos_token_id=stop, pad_token_id=loaded.tokenizer.pad_token_id)
        theirs_new = llava.generate(**inputs, max_new_tokens=6)[0, inputs["input_ids"].shape[1]:]
        assert ours_new[0].tolist() == theirs_new.tolist()
    assert worst <= 1e-5
    return worst


# -- the supported matrix -------------------------------------------------------------------------------
@pytest.mark.parametrize(("llm", "tower", "layer", "strategy", "preprocess"), MATRIX,
                         ids=["-".join(map(str, row)) for row in MATRIX])
def test_export_matches_ours(tmp_path, llm, tower, layer, strategy, preprocess):
    from safetensors.torch import load_file

    from tinyllava.interop.export_hf_llava import export_hf_llava, read_sidecar

    ckpt = make_checkpoint(tmp_path / "ckpt", model_spec(llm, tower, layer, strategy, preprocess))
    out = export_hf_llava(ckpt, tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    assert config["vision_feature_layer"] == -1
    assert config["vision_config"]["num_hidden_layers"] == (2 if layer == -2 else 3)  # the layers the feature uses
    drops = strategy == "drop_first_patch" or (strategy == "patch" and tower != "siglip")
    assert config["vision_feature_select_strategy"] == ("default" if drops else "full")
    assert read_sidecar(out)["image_preprocess"] == preprocess
    assert read_sidecar(out)["tokenizer_add_bos_token"] is (False if llm == "phi3" else None)
    names = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"] \
        if (out / "model.safetensors.index.json").exists() else load_file(str(out / "model.safetensors"))
    tower_keys = [k for k in names if k.startswith("vision_tower.")]
    assert tower_keys and all(k.startswith("vision_tower.vision_model.") == (tower != "dinov2") for k in tower_keys)
    assert any(k.startswith("language_model.model.") for k in names)
    worst = compare(ckpt, out)
    MAX_DIFFS["-".join(map(str, (llm, tower, layer, strategy, preprocess)))] = worst
    print(f"\nmax |logit difference| {llm}/{tower}/layer {layer}/{strategy}/{preprocess}: {worst:.3g}")


@pytest.mark.parametrize(("llm", "template"), [("llama", {"name": "pretrain"}), ("qwen2", {"name": "qwen2_instruct"}),
                                              ("llama", {"name": "llama", "image_placement": "last"})],
                         ids=["pretrain", "qwen2_instruct", "image-last"])
def test_other_templates(tmp_path, llm, template):
    """The stage-1 caption template (BOS + image), Qwen's instruct template, the image after the question."""
    from tinyllava.interop.export_hf_llava import export_hf_llava

    spec = model_spec(llm, "clip")
    spec["chat_template"] = template
    ckpt = make_checkpoint(tmp_path / "ckpt", spec)
    out = export_hf_llava(ckpt, tmp_path / "hf")
    conversations = CONVERSATIONS[:1] if template["name"] == "pretrain" else CONVERSATIONS
    print(f"\nmax |logit difference| {template}: {compare(ckpt, out, conversations):.3g}")


def test_linear_connector_becomes_linear_identity_activation_identity(tmp_path):
    from safetensors.torch import load_file

    from tinyllava.interop.export_hf_llava import export_hf_llava

    for bias in (True, False):
        ckpt = make_checkpoint(tmp_path / f"ckpt{bias}", model_spec(connector={"name": "linear", "bias": bias}))
        out = export_hf_llava(ckpt, tmp_path / f"hf{bias}")
        config = json.loads((out / "config.json").read_text())
        assert config["projector_hidden_act"] == "linear" and config["multimodal_projector_bias"] is bias
        weights = load_file(str(out / "model.safetensors"))
        assert torch.equal(weights["multi_modal_projector.linear_2.weight"], torch.eye(32))
        print(f"\nmax |logit difference| linear connector (bias {bias}): {compare(ckpt, out):.3g}")


def test_chat_template_accepts_plain_string_content_and_skips_system_messages(tmp_path):
    from transformers import AutoProcessor

    from tinyllava.checkpoint.load import load_checkpoint
    from tinyllava.interop.export_hf_llava import export_hf_llava

    ckpt = make_checkpoint(tmp_path / "ckpt", model_spec())
    out = export_hf_llava(ckpt, tmp_path / "hf")
    processor, loaded = AutoProcessor.from_pretrained(out), load_checkpoint(ckpt)
    messages = [{"role": "system", "content": "ignored"}, {"role": "user", "content": "Describe it. <image>"},
                {"role": "assistant", "content": "A red circle on the left."},
                {"role": "user", "content": "And the colour of the square?"}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    # the llama template starts with BOS, which this tokenizer does not add by itself: the Jinja writes it
    assert text == "<s>" + loaded.template.render(CONVERSATIONS[1], add_generation_prompt=True)
    ids = processor(text=text, images=[picture()])["input_ids"][0]
    seq = int(loaded.model.config.image_seq_len)
    assert collapse(list(ids), processor.image_token_id, seq) == ours_prompt(loaded, CONVERSATIONS[1])
    # the tokenizer carries the same template, so tokenizer-only users render the same prompt
    assert processor.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == text


def test_loads_with_plain_transformers_only(tmp_path):
    """A fresh interpreter that never imports tinyllava loads the export, and generates what ours does."""
    from tinyllava.checkpoint.load import load_checkpoint
    from tinyllava.interop.export_hf_llava import export_hf_llava

    ckpt = make_checkpoint(tmp_path / "ckpt", model_spec("llama", "clip", -2, "patch", "pad"))
    out = export_hf_llava(ckpt, tmp_path / "hf")
    picture().save(tmp_path / "picture.png")
    script = f"""
import json, sys, torch
torch.set_num_threads(1)
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration
model = LlavaForConditionalGeneration.from_pretrained({str(out)!r}).eval()
processor = AutoProcessor.from_pretrained({str(out)!r})
messages = [{{"role": "user", "content": [{{"type": "image"}}, {{"type": "text", "text": "What is in the picture?"}}]}}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
inputs = processor(text=prompt, images=[Image.open({str(tmp_path / "picture.png")!r})], return_tensors="pt")
with torch.no_grad():
    last = model(**inputs).logits[0, -1].tolist()
new = model.generate(**inputs, max_new_tokens=6)[0, inputs["input_ids"].shape[1]:].tolist()
assert not any(m.startswith("tinyllava") for m in sys.modules), "tinyllava was imported"
print(json.dumps({{"last": last, "new": new, "ids": inputs["input_ids"][0].tolist()}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    loaded = load_checkpoint(ckpt)
    from tinyllava.data.images import open_image, preprocess_image

    seq = int(loaded.model.config.image_seq_len)
    conversation = [{"from": "human", "value": "<image>\nWhat is in the picture?"}]
    ids = ours_prompt(loaded, conversation)
    image_token_id = json.loads((out / "config.json").read_text())["image_token_index"]
    assert collapse(result["ids"], image_token_id, seq) == ids
    expanded = [t for tok in ids for t in ([IMAGE_TOKEN_INDEX] * seq if tok == IMAGE_TOKEN_INDEX else [tok])]
    pixels = preprocess_image(open_image(tmp_path / "picture.png"), loaded.image_processor, "pad").unsqueeze(0)
    with torch.no_grad():
        last = loaded.model(input_ids=torch.tensor([expanded]), pixel_values=pixels).logits[0, -1]
    vocab = last.shape[0]
    assert float((last - torch.tensor(result["last"][:vocab])).abs().max()) <= 1e-5
    new = loaded.model.generate(torch.tensor([expanded]), pixel_values=pixels, max_new_tokens=6, do_sample=False,
                                eos_token_id=loaded.template.stop_token_ids(loaded.tokenizer))
    assert new[0].tolist() == result["new"]


# -- the image token ------------------------------------------------------------------------------------
def test_image_token_is_appended_once_and_recorded(tmp_path):
    from safetensors.torch import load_file

    from tinyllava.interop.export_hf_llava import export_hf_llava, read_sidecar

    ckpt = make_checkpoint(tmp_path / "ckpt", model_spec())
    out = export_hf_llava(ckpt, tmp_path / "hf")
    side = read_sidecar(out)
    ours = load_file(str(ckpt / "model.safetensors"))
    theirs = load_file(str(out / "model.safetensors"))
    vocab = ours["language_model.model.embed_tokens.weight"].shape[0]
    assert side["original_vocab_size"] == vocab and side["appended_rows"] == 1 and side["image_token_id"] == vocab
    assert side["added_image_token"] is True and side["tokenizer_chat_template"] is None
    assert side["tokenizer_add_bos_token"] is None
    # transformers 5 saves LLaVA under its legacy (4.x) key names (and reads both)
    embed = theirs["language_model.model.embed_tokens.weight"]
    assert embed.shape[0] == vocab + 1 and torch.equal(embed[:vocab], ours["language_model.model.embed_tokens.weight"])
    assert not embed[vocab:].any()  # the added row is zero ...
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["suppress_tokens"] == [vocab]  # ... and never generated
    tokenizer_config = (out / "tokenizer.json").read_text()
    assert '"<image>"' in tokenizer_config


def test_no_row_is_appended_inside_a_padded_vocabulary(tmp_path):
    """A vocabulary larger than the tokenizer (as Qwen's) already has a row for the new `<image>` id."""
    from tinyllava.interop.export_hf_llava import export_hf_llava, read_sidecar

    spec = model_spec("qwen2", "clip")
    spec["llm"]["config"]["vocab_size"] = 700
    ckpt = make_checkpoint(tmp_path / "ckpt", spec)
    out = export_hf_llava(ckpt, tmp_path / "hf")
    side = read_sidecar(out)
    assert side["appended_rows"] == 0 and side["original_vocab_size"] == 700 and side["image_token_id"] < 700
    assert side["added_image_token"] is True  # added to the tokenizer, though no row was needed
    assert json.loads((out / "config.json").read_text())["text_config"]["vocab_size"] == 700
    compare(ckpt, out, CONVERSATIONS[:1])


def test_dtype_and_adapters_are_merged_first(tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file

    from tinyllava.checkpoint.save import save_checkpoint
    from tinyllava.interop.export_hf_llava import export_hf_llava
    from tinyllava.model.build import build_fresh
    from tinyllava.plugins.registry import get_registry
    from tinyllava.spec.runspec import ModelSpec, StageSpec
    from tinyllava.training.parameters import apply_tuning

    torch.manual_seed(0)
    built = build_fresh(get_registry(), ModelSpec.model_validate(model_spec()))
    stage = StageSpec.model_validate({"name": "s", "tune": {"llm": {"mode": "lora", "lora": {"r": 4}},
                                                            "vision_tower": "frozen", "connector": "full"}})
    apply_tuning(built.model, stage, ("frozen", "full", "lora"))
    with torch.no_grad():
        for name, p in built.model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape) * 0.2)
    assert isinstance(built.model.language_model, PeftModel)
    ckpt = save_checkpoint(tmp_path / "ckpt", built.model, built.tokenizer, built.image_processor,
                           chat_template={"name": "llama", "options": {}}, save_format="adapters")
    assert (ckpt / "adapters" / "llm").is_dir()
    out = export_hf_llava(ckpt, tmp_path / "hf")
    assert not any("lora" in key for key in load_file(str(out / "model.safetensors")))
    compare(ckpt, out, CONVERSATIONS[:1])  # load_checkpoint(merge_adapters=False) runs the adapters: same logits
    auto = export_hf_llava(ckpt, tmp_path / "auto", dtype="auto")  # the LLM's dtype
    assert json.loads((auto / "config.json").read_text())["dtype"] == "float32"
    half = export_hf_llava(ckpt, tmp_path / "bf16", dtype="bfloat16")
    assert {t.dtype for t in load_file(str(half / "model.safetensors")).values()} == {torch.bfloat16}
    assert json.loads((half / "config.json").read_text())["dtype"] == "bfloat16"


def test_model_card(tmp_path):
    from tinyllava.interop.export_hf_llava import export_hf_llava

    ckpt = make_checkpoint(tmp_path / "ckpt", model_spec("qwen2", "siglip"))
    card = (export_hf_llava(ckpt, tmp_path / "hf") / "README.md").read_text()
    assert card.splitlines()[6] == "# ckpt, stage test (LLaVA layout)"  # no run name in this spec: the folder
    for needle in ("| llm | `qwen` |", "| vision_tower | `siglip` |", "| connector | `mlp` |",
                   "LlavaForConditionalGeneration.from_pretrained", "AutoProcessor.from_pretrained",
                   "```yaml", "image_preprocess: square", "## Provenance", str(ckpt.resolve()),
                   "tinyllava-plugin-qwen"):
        assert needle in card, needle


def test_pad_colour_matches_llava(tmp_path):
    """LLaVA pads with int(mean * 255), and so do we: CLIP's mean (where rounding would give 123/117 against
    122/116) gives the same pixels on a non-square image, and the export reports no difference."""
    from transformers import AutoProcessor

    from tinyllava.data.images import preprocess_image
    from tinyllava.interop.export_hf_llava import export_hf_llava_report

    clip_mean = [0.48145466, 0.4578275, 0.40821073]
    spec = model_spec("llama", "clip", preprocess="pad")
    spec["vision_tower"]["image_mean"] = clip_mean
    ckpt = make_checkpoint(tmp_path / "ckpt", spec)
    report = export_hf_llava_report(ckpt, tmp_path / "hf")
    from tinyllava.checkpoint.load import load_checkpoint

    loaded = load_checkpoint(ckpt)
    image = picture()
    ours = preprocess_image(image, loaded.image_processor, "pad")
    theirs = AutoProcessor.from_pretrained(tmp_path / "hf").image_processor(images=image,
                                                                            return_tensors="pt")["pixel_values"][0]
    assert torch.equal(ours, theirs)
    assert report.warnings == []
    assert "Known differences" not in (tmp_path / "hf" / "README.md").read_text()


# -- refusals -------------------------------------------------------------------------------------------
REFUSED = {
    "mlp-grid-positions": (dict(connector={"name": "mlp", "depth": 2, "position_embedding": "grid"}),
                           ["connector 'mlp'", "position_embedding"]),
    "mlp-depth-3": (dict(connector={"name": "mlp", "depth": 3}), ["connector 'mlp'", "depth 3"]),
    "resampler": (dict(connector={"name": "resampler"}), ["connector 'resampler'"]),
    "final-norm": ({"tower_extra": {"final_norm": True}}, ["vision_tower 'clip'", "final_norm"]),
    "feature-layer-0": ({"tower_extra": {"feature_layer": 0}}, ["vision_tower 'clip'", "feature_layer 0"]),
    "phi-biased-head": ({"llm": "phi"}, ["llm 'phi'", "bias"]),
    "gemma2-softcap": ({"llm": "gemma2"}, ["llm 'gemma'", "final_logit_softcapping"]),
    "native-template": (dict(chat_template={"name": "native", "jinja": "{{ messages[0]['content'] }}"}),
                        ["chat_template 'native'"]),
    "identity": (dict(connector={"name": "identity"}), ["connector 'identity'", "no weights"]),
    "qformer": (dict(connector={"name": "qformer", "num_queries": 4, "num_layers": 1, "hidden_size": 32,
                                "num_heads": 2}), ["connector 'qformer'", "learned queries"]),
    "ldp": (dict(connector={"name": "ldp"}), ["connector 'ldp'", "pools the patch grid"]),
    "pixel-shuffle": (dict(connector={"name": "pixel_shuffle"}), ["connector 'pixel_shuffle'", "blocks"]),
    "siglip2": (dict(vision_tower={"name": "siglip2", "config": {**TOWER_CONFIG, "num_patches": 16}}),
                ["vision_tower 'siglip2'", "NaFlex"]),
    "dinov2-registers": (dict(vision_tower={"name": "dinov2", "config": {
        **TOWER_CONFIG, "model_type": "dinov2_with_registers", "num_register_tokens": 2}}),
        ["vision_tower 'dinov2'", "register tokens"]),
    "mof": (dict(vision_tower={"name": "mof", "clip": {"config": TOWER_CONFIG}, "dinov2": {"config": TOWER_CONFIG}},
                 connector={"name": "mof_mlp"}), ["vision_tower 'mof'", "connector 'mof_mlp'"]),
    "openelm": ({"llm": "openelm"}, ["llm 'openelm'", "remote code"]),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_before_anything_is_written(tmp_path, case):
    from tinyllava.interop.export_hf_llava import ExportError, export_hf_llava

    replace, needles = REFUSED[case]
    replace = dict(replace)
    spec = model_spec()
    if "tower_extra" in replace:
        spec["vision_tower"].update(replace.pop("tower_extra"))
    if replace.get("llm") == "phi":
        replace["llm"] = {"name": "phi", "config": {"model_type": "phi", **LAYERS}, "tokenizer_corpus": CORPUS}
        replace["chat_template"] = {"name": "phi"}
    elif replace.get("llm") == "openelm":
        replace["llm"] = {"name": "openelm", "config": {"num_transformer_layers": 2, "model_dim": 64, "head_dim": 16},
                          "tokenizer_corpus": CORPUS}
    elif replace.get("llm") == "gemma2":
        replace["llm"] = {"name": "gemma", "config": {"model_type": "gemma2", **LAYERS, "head_dim": 16},
                          "tokenizer_corpus": CORPUS}
        replace["chat_template"] = {"name": "gemma"}
    spec.update(replace)
    ckpt = make_checkpoint(tmp_path / "ckpt", spec)
    with pytest.raises(ExportError) as info:
        export_hf_llava(ckpt, tmp_path / "hf")
    for needle in needles:
        assert needle in str(info.value)
    assert not (tmp_path / "hf").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_every_problem_is_listed_at_once(tmp_path):
    """The quickstart's own model (embeddings as features, final norm, grid positions): three reasons at once."""
    from tinyllava.interop.export_hf_llava import ExportError, export_hf_llava

    spec = model_spec(connector={"name": "mlp", "depth": 2, "position_embedding": "grid"})
    spec["vision_tower"].update(final_norm=True, feature_layer=0)
    ckpt = make_checkpoint(tmp_path / "ckpt", spec)
    with pytest.raises(ExportError) as info:
        export_hf_llava(ckpt, tmp_path / "hf")
    for needle in ("connector 'mlp'", "position_embedding 'grid'", "vision_tower 'clip'", "final_norm",
                   "feature_layer 0"):
        assert needle in str(info.value)


def test_cli(tmp_path):
    from typer.testing import CliRunner

    from tinyllava_cli.app import app

    good = make_checkpoint(tmp_path / "good", model_spec())
    bad = make_checkpoint(tmp_path / "bad", model_spec(connector={"name": "mlp", "depth": 3}))
    runner = CliRunner()
    result = runner.invoke(app, ["export", "--model", str(good), "--to", "hf-llava", "--output", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "model.safetensors").is_file() and "exported" in result.output
    again = runner.invoke(app, ["export", "-m", str(good), "-o", str(tmp_path / "o")])
    assert again.exit_code == 2 and "not empty" in again.output
    refused = runner.invoke(app, ["export", "-m", str(bad), "-o", str(tmp_path / "r")])
    assert refused.exit_code == 2 and "depth 3" in refused.output and "nothing was written" in refused.output
    assert "Traceback" not in refused.output and not (tmp_path / "r").exists()
    unknown = runner.invoke(app, ["export", "-m", str(good), "-o", str(tmp_path / "u"), "--to", "gguf"])
    assert unknown.exit_code == 2 and "hf-llava" in unknown.output
