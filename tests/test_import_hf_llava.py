"""`tinyllava import --from hf-llava`: tiny LlavaForConditionalGeneration checkpoints built with transformers' own
classes (transformers 5 key names, transformers 4 key names, and what save_pretrained writes) import as our
plugins and give transformers' logits and greedy tokens on the same prompt; the config maps
(vision_feature_layer, select strategy, projector, pad vs square) and unsupported configs are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from tinyllava.checkpoint.load import load_checkpoint, read_manifest
from tinyllava.constants import IMAGE_TOKEN_INDEX
from tinyllava.data.images import preprocess_image
from tinyllava.interop.import_checkpoint import import_checkpoint
from tinyllava.interop.import_common import ImportFailed

QUESTION = "What shape is the red object?"
CORPUS = ["USER: ", " ASSISTANT: ", QUESTION, "red circle square blue", "A chat between a curious user"]
LLMS: dict[str, dict[str, Any]] = {
    "llama": dict(cfg="LlamaConfig", special=("<unk>", "<s>", "</s>"), bos="<s>", eos="</s>", unk="<unk>",
                  pad=None, add_bos=True, template="llama"),
    "qwen2": dict(cfg="Qwen2Config", special=("<|endoftext|>", "<|im_start|>", "<|im_end|>"), bos=None,
                  eos="<|endoftext|>", unk=None, pad="<|endoftext|>", add_bos=False, template="qwen2_base"),
    "gemma": dict(cfg="GemmaConfig", special=("<pad>", "<eos>", "<bos>", "<unk>"), bos="<bos>", eos="<eos>",
                  unk="<unk>", pad="<pad>", add_bos=True, template="gemma"),
}
TOWERS = {"clip": "CLIPVisionConfig", "siglip": "SiglipVisionConfig"}


def make_tokenizer(llm: str) -> Any:
    from tinyllava.kits.tokenizers import TokenizerSpec, build_family_tokenizer

    f = LLMS[llm]
    spec = TokenizerSpec(special=(*f["special"], "<image>"), bos=f["bos"], eos=f["eos"], unk=f["unk"],
                         pad=f["pad"], add_bos=f["add_bos"])
    return build_family_tokenizer(spec, CORPUS, 360)


class Llava:
    """A tiny LlavaForConditionalGeneration and its LlavaProcessor."""

    def __init__(self, llm: str, tower: str, *, layer: int = -2, strategy: str = "default", pad: bool = False,
                 tie: bool = False, seed: int = 0, **extra: Any) -> None:
        import transformers
        from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

        torch.manual_seed(seed)
        self.tokenizer = make_tokenizer(llm)
        text = dict(vocab_size=len(self.tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                    tie_word_embeddings=tie, eos_token_id=self.tokenizer.eos_token_id,
                    bos_token_id=self.tokenizer.bos_token_id, pad_token_id=self.tokenizer.pad_token_id)
        if llm == "gemma":
            text["head_dim"] = 16
        vision = getattr(transformers, TOWERS[tower])(hidden_size=24, intermediate_size=48, num_hidden_layers=3,
                                                      num_attention_heads=2, image_size=32, patch_size=8)
        cls_token = 1 if tower == "clip" else 0
        tokens = 16 + cls_token - (1 if strategy == "default" else 0)
        config = LlavaConfig(vision_config=vision.to_dict(),
                             text_config=getattr(transformers, LLMS[llm]["cfg"])(**text).to_dict(),
                             image_token_index=self.tokenizer.convert_tokens_to_ids("<image>"),
                             image_seq_length=tokens, vision_feature_layer=layer,
                             vision_feature_select_strategy=strategy, **extra)
        self.model = LlavaForConditionalGeneration(config).eval()
        if tower == "clip":
            image_processor = transformers.LlavaImageProcessor(
                size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, do_pad=pad,
                image_mean=[0.0, 0.0, 0.0] if pad else [0.48145466, 0.4578275, 0.40821073],
                image_std=[0.26862954, 0.26130258, 0.27577711])
        else:
            image_processor = transformers.SiglipImageProcessor(size={"height": 32, "width": 32},
                                                                image_mean=[0.5] * 3, image_std=[0.5] * 3)
        self.processor = LlavaProcessor(image_processor=image_processor, tokenizer=self.tokenizer, patch_size=8,
                                        vision_feature_select_strategy=strategy,
                                        num_additional_image_tokens=cls_token)
        self.llm, self.tower_kind, self.pad = llm, tower, pad

    def save(self, out: Path, keys: str) -> Path:
        """keys: t5 (in-memory names), t4 (transformers 4's file names) or save_pretrained (what it writes)."""
        from safetensors.torch import save_file

        out.mkdir(parents=True, exist_ok=True)
        if keys == "save_pretrained":
            self.model.save_pretrained(out)
        else:
            state = {k: v.detach().clone().contiguous() for k, v in self.model.state_dict().items()}
            if self.model.config.tie_word_embeddings:
                state.pop("lm_head.weight")
            if keys == "t4":
                state = {t4_name(k, self.tower_kind): v for k, v in state.items()}
            self.model.config.save_pretrained(out)
            save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
        self.processor.save_pretrained(out)
        return out

    def inputs(self, prompt: str, image: Image.Image) -> Any:
        return self.processor(text=prompt, images=image, return_tensors="pt")


def t4_name(key: str, tower: str) -> str:
    for new, old in (("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
                     ("model.multi_modal_projector.", "multi_modal_projector.")):
        if key.startswith(new):
            return old + key[len(new):]
    assert key.startswith("model.vision_tower."), key
    return "vision_tower.vision_model." + key[len("model.vision_tower."):]  # transformers 4 nested vision_model


def sample_image() -> Image.Image:
    torch.manual_seed(7)
    return Image.fromarray((torch.rand(30, 46, 3) * 255).to(torch.uint8).numpy())


MATRIX = [  # llm, tower, keys, layer, strategy, pad, tie
    ("llama", "clip", "t5", -2, "default", False, False),
    ("llama", "clip", "t4", -1, "full", True, True),
    ("llama", "clip", "save_pretrained", -2, "default", True, False),
    ("qwen2", "siglip", "t5", -2, "default", False, True),
    ("qwen2", "clip", "t4", -2, "default", False, False),
    ("gemma", "siglip", "t4", -1, "full", False, False),
]


@pytest.mark.parametrize(("llm", "tower", "keys", "layer", "strategy", "pad", "tie"), MATRIX,
                         ids=["-".join(map(str, row)) for row in MATRIX])
def test_hf_llava_import_matches_transformers(tmp_path: Path, llm: str, tower: str, keys: str, layer: int,
                                              strategy: str, pad: bool, tie: bool) -> None:
    llava = Llava(llm, tower, layer=layer, strategy=strategy, pad=pad, tie=tie)
    src = llava.save(tmp_path / "src", keys)
    out = import_checkpoint("hf-llava", src, tmp_path / "out")

    manifest = read_manifest(out)
    comps = manifest["components"]
    assert comps["llm"]["name"] == ("qwen" if llm == "qwen2" else llm)
    assert comps["vision_tower"]["name"] == tower
    opts = comps["vision_tower"]["options"]
    assert opts["feature_layer"] == layer
    assert opts["feature_strategy"] == ("patch" if strategy == "default" else "cls_patch")
    assert opts.get("drop_first_patch", False) == (tower == "siglip" and strategy == "default")
    assert comps["connector"] == {"name": "mlp", "options": {"depth": 2, "position_embedding": "none"}}
    assert comps["chat_template"]["name"] == LLMS[llm]["template"]
    assert manifest["image_preprocess"] == ("pad" if pad else "square")
    assert manifest["image_seq_len"] == llava.model.config.image_seq_length
    assert manifest["imported_from"]["format"] == "hf-llava"

    loaded = load_checkpoint(out)
    image = sample_image()
    conversation = [{"from": "human", "value": f"<image>\n{QUESTION}"}]
    ours_ids = loaded.template.generation_prompt(conversation, loaded.tokenizer)
    prompt = loaded.template.render(conversation, add_generation_prompt=True)
    hf = llava.inputs(prompt, image)
    image_id = llava.model.config.image_token_index
    hf_ids = hf["input_ids"][0].tolist()
    collapsed = [t for i, t in enumerate(hf_ids) if t != image_id or i == 0 or hf_ids[i - 1] != image_id]
    assert [IMAGE_TOKEN_INDEX if t == image_id else t for t in collapsed] == ours_ids  # the same prompt
    pixels = preprocess_image(image, loaded.image_processor, manifest["image_preprocess"]).unsqueeze(0)
    assert torch.equal(pixels, hf["pixel_values"])  # the same image preprocessing (pad or square)
    input_ids = torch.where(hf["input_ids"] == image_id, IMAGE_TOKEN_INDEX, hf["input_ids"])
    with torch.no_grad():
        ref = llava.model(**hf).logits[0]
        got = loaded.model(input_ids=input_ids, pixel_values=pixels).logits[0]
        stop = loaded.tokenizer.eos_token_id
        ref_gen = llava.model.generate(**hf, max_new_tokens=8, do_sample=False, eos_token_id=stop,
                                       pad_token_id=stop)[0, hf["input_ids"].shape[1]:]
        got_gen = loaded.model.generate(input_ids, pixel_values=pixels, max_new_tokens=8, do_sample=False,
                                        eos_token_id=stop, pad_token_id=stop)[0]
    diff = (got - ref).abs().max().item()
    print(f"hf-llava {llm}/{tower}/{keys}/{layer}/{strategy}/pad={pad}: max |logit diff| = {diff:.2e}")
    assert diff <= 1e-5
    assert got_gen.tolist() == ref_gen.tolist()


@pytest.mark.parametrize(("change", "message"), [
    ({"vision_feature_layer": [-2, -1]}, "selects several layers"),
    ({"projector_hidden_act": "relu"}, "projector_hidden_act 'relu' cannot be imported"),
    ({"model_type": "llava_next"}, "model_type 'llava_next'"),
    ({"model_type": "tinyllava"}, "use --from tinyllava-factory"),
    ({"vision_feature_select_strategy": "cls"}, "vision_feature_select_strategy 'cls' is unknown"),
    ({"text_config": {"model_type": "mamba"}}, "no installed llm plugin adopts LLM model_type 'mamba'"),
    ({"vision_config": {"model_type": "dinov2"}}, "no installed vision_tower plugin adopts vision model_type"),
    ({"multimodal_projector_bias": False}, "no installed connector plugin adopts the projector"),
])
def test_unsupported_configs_are_refused(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    src = Llava("llama", "clip").save(tmp_path / "src", "t5")
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ImportFailed, match=message):
        import_checkpoint("hf-llava", src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_stray_weights_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    src = Llava("llama", "clip").save(tmp_path / "src", "t5")
    state = load_file(str(src / "model.safetensors"))
    save_file({**state, "model.image_newline": torch.zeros(32)}, str(src / "model.safetensors"))
    with pytest.raises(ImportFailed, match="weights outside the LLaVA layout"):
        import_checkpoint("hf-llava", src, tmp_path / "out")
