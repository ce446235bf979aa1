"""Export a tinyllava checkpoint to transformers' own LLaVA layout (`LlavaForConditionalGeneration` +
`LlavaProcessor`), loadable with nothing but transformers: no remote code, no tinyllava.

Each component describes itself through its `hf_llava_export` contract (see `tinyllava.components`); the
core never names a plugin. What LLaVA cannot express is refused before anything is written, naming the
component and why. Adapters are merged first. Before writing, the exporter checks on probe inputs that the
exported processor gives the same token ids and pixels as this checkpoint, and the exported model the same
logits; the folder is written under a temporary name and renamed only when complete.

The image token (the one transformation of the weights, invertible):
    LLaVA marks image positions with a real token id (`image_token_id`) that its embedding must be able to look
    up: `LlavaModel.forward` embeds `input_ids` before it overwrites the image positions, so an id at or past
    the vocabulary size fails (transformers 5.24). When the tokenizer has no `<image>` token, the exporter adds
    `<image>` as a special token; its id is the tokenizer's next free id. When that id is past the embedding
    (the usual case) the embedding, and an untied lm_head, grow by rows of zeros up to it: the embedding row is
    never used (image positions are overwritten by image features) and the lm_head row gives logit 0, so
    `generation_config.json` lists the token in `suppress_tokens`, and generation never emits it. `config.json`
    records what was done under `tinyllava_export` (`image_token_id`, `original_vocab_size`, `appended_rows`,
    `added_image_token`): an importer drops the last `appended_rows` rows, and the `<image>` token when
    `added_image_token`, to get this checkpoint's weights and tokenizer back bit for bit. When the tokenizer
    already has `<image>`, or its id falls inside a padded vocabulary, no row is appended. The record also keeps
    the tokenizer's own chat template (`tokenizer_chat_template`; the exported tokenizer carries the processor's
    Jinja) and `tokenizer_add_bos_token: false` when the export switched off a BOS the template never had (else
    null).

Key names: those of the Hub's LLaVA checkpoints (transformers 4's layout, which loaders written for it expect;
transformers 5 reads them too, tested; transformers 4 and vLLM are not installed here): `language_model.model.*`,
`language_model.lm_head.*` (untied heads only), `vision_tower.*` (with the tower's own 4.x prefix restored,
`vision_tower.vision_model.*` for CLIP and SigLIP; transformers 5's `save_pretrained` leaves it out) and
`multi_modal_projector.*`. Other 4.x renames of a tower (DINOv2's attention names) are not undone.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyllava.constants import IMAGE_PLACEHOLDER, IMAGE_TOKEN_INDEX
from tinyllava.interop.export_contract import HFLlavaPart, NotExportable, component_label
from tinyllava.interop.export_jinja import added_by_tokenizer, to_hf_messages

DTYPES = ("float32", "bfloat16", "float16", "auto")
EXPORT_FORMAT = 1
SIDECAR_KEY = "tinyllava_export"
IMAGE_MODES = ("square", "pad")
LOGIT_TOLERANCE = 1e-4  # the export-time check; the tests hold tiny models to 1e-5

PROBE_CONVERSATIONS: list[list[dict[str, str]]] = [
    [{"from": "human", "value": "<image>\nWhat is in the picture?"}],
    [
        {"from": "human", "value": "Describe it. <image>"},
        {"from": "gpt", "value": "A red circle on the left."},
        {"from": "human", "value": "And the colour of the square?"},
    ],
    [{"from": "human", "value": "Hello there, how are you?"}],
]


class ExportError(ValueError):
    """The checkpoint cannot be exported; the message says what, why and what to do. Nothing was written."""


@dataclass
class ExportReport:
    output: Path
    dtype: str
    seconds: float
    image_token_id: int
    appended_rows: int
    max_logit_diff: float | None
    warnings: list[str] = field(default_factory=list)


# -- probes ---------------------------------------------------------------------------------------------
def probe_image(width: int = 45, height: int = 29) -> Any:
    """A deterministic picture with detail everywhere (a gradient and two shapes), non-square by default."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height))
    image.putdata([((x * 255) // max(width - 1, 1), (y * 255) // max(height - 1, 1), ((x + y) * 7) % 256)
                   for y in range(height) for x in range(width)])
    draw = ImageDraw.Draw(image)
    draw.ellipse((2, 2, width // 2, height // 2), fill=(220, 30, 30))
    draw.rectangle((width // 2, height // 2, width - 3, height - 3), fill=(20, 40, 200))
    return image


def collapse_image_tokens(ids: list[int], image_token_id: int, expected: int) -> list[int]:
    """Processor ids -> template ids: each run of `image_token_id` becomes one IMAGE_TOKEN_INDEX."""
    out: list[int] = []
    run = 0
    for tok in [*ids, None]:
        if tok == image_token_id:
            run += 1
            continue
        if run:
            if run != expected:
                raise ExportError(f"the exported processor expands <image> to {run} tokens, the model makes "
                                  f"{expected} image features")
            out.append(IMAGE_TOKEN_INDEX)
            run = 0
        if tok is not None:
            out.append(tok)
    return out


# -- the plan -------------------------------------------------------------------------------------------
def _dtype_name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "")


def _collect_parts(components: dict[str, Any], modules: dict[str, Any]) -> tuple[dict[str, HFLlavaPart], list[str]]:
    parts: dict[str, HFLlavaPart] = {}
    problems: list[str] = []
    for kind in ("llm", "vision_tower", "connector"):
        try:
            parts[kind] = components[kind].hf_llava_export(modules[kind])
        except NotExportable as exc:
            problems.append(str(exc))
    return parts, problems


def _image_processor_settings(processor: Any, mode: str) -> dict[str, Any]:
    """LlavaImageProcessor fields that reproduce `processor` (resize, crop, rescale, normalise), pad for `pad`."""
    saved = processor.to_dict()
    keys = ("do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
            "do_normalize", "image_mean", "image_std", "do_convert_rgb")
    settings = {key: saved[key] for key in keys if saved.get(key) is not None}
    if not settings.get("do_center_crop") or "crop_size" not in settings:
        size = settings.get("size") or {}
        if "height" in size and "width" in size:  # vLLM and LlavaProcessor read crop_size for the token count
            settings["crop_size"] = {"height": size["height"], "width": size["width"]}
        settings["do_center_crop"] = bool(saved.get("do_center_crop"))
    settings["do_pad"] = mode == "pad"
    return settings


def _add_image_token(tokenizer: Any) -> tuple[int, bool]:
    """(the id of `<image>`, whether it was added now)."""
    from tokenizers import AddedToken

    ids = tokenizer(IMAGE_PLACEHOLDER, add_special_tokens=False)["input_ids"]
    if len(ids) == 1 and tokenizer.convert_ids_to_tokens(ids[0]) == IMAGE_PLACEHOLDER:
        return int(ids[0]), False
    tokenizer.add_tokens([AddedToken(IMAGE_PLACEHOLDER, special=True, normalized=False)], special_tokens=True)
    return int(tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER)), True


def _grow_embeddings(language_model: Any, rows: int) -> None:
    """Resize to `rows`, the new rows zero (see the module docstring)."""
    import torch

    old = language_model.get_input_embeddings().weight.shape[0]
    language_model.resize_token_embeddings(rows, mean_resizing=False)
    with torch.no_grad():
        language_model.get_input_embeddings().weight[old:] = 0
        head = language_model.get_output_embeddings()
        if head is not None:
            head.weight[old:] = 0
            if getattr(head, "bias", None) is not None:
                head.bias[old:] = 0


def _state_dict(parts: dict[str, HFLlavaPart], modules: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, part in parts.items():
        for key, value in modules[kind].state_dict().items():
            if key not in part.keys:
                raise ExportError(f"{kind}: weight {key!r} has no place in the LLaVA layout (a plugin bug: its "
                                  "hf_llava_export must map every key)")
            out[part.keys[key]] = value
        out.update(part.extra)
    return out


def _build_llava(config: Any, state: dict[str, Any]) -> Any:
    from transformers import LlavaForConditionalGeneration
    from transformers.initialization import no_init_weights

    with no_init_weights():
        model = LlavaForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ExportError(f"the mapped weights do not fit LlavaForConditionalGeneration: missing "
                          f"{sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    return model.eval()


# -- the checks -----------------------------------------------------------------------------------------
def _check_tokens(template: Any, tokenizer: Any, processor: Any, image_seq_len: int, image_token_id: int,
                  image: Any) -> None:
    for conversation in PROBE_CONVERSATIONS:
        has_image = any(IMAGE_PLACEHOLDER in turn["value"] for turn in conversation)
        ours = template.generation_prompt(conversation, tokenizer)
        text = processor.apply_chat_template(to_hf_messages(conversation), add_generation_prompt=True)
        images = [image] if IMAGE_PLACEHOLDER in text else None
        if images is None and IMAGE_TOKEN_INDEX in ours or images is not None and not has_image and \
                IMAGE_TOKEN_INDEX not in ours:
            raise ExportError(f"{component_label(template)}: its Jinja places images differently from the template")
        ids = processor(text=text, images=images)["input_ids"][0]
        theirs = collapse_image_tokens(list(ids), image_token_id, image_seq_len)
        if theirs != ours:
            raise ExportError(
                f"{component_label(template)}: the exported chat template gives other token ids than the template "
                f"for {conversation!r}:\n  template  {ours}\n  exported  {theirs}\n  (Jinja text {text!r})"
            )


def _pixels(ours_processor: Any, mode: str, llava_processor: Any, image: Any) -> tuple[Any, Any]:
    from tinyllava.data.images import preprocess_image

    ours = preprocess_image(image, ours_processor, mode)
    theirs = llava_processor.image_processor(images=image, return_tensors="pt")["pixel_values"][0]
    return ours, theirs


def _check_pixels(tower: Any, ours_processor: Any, mode: str, llava_processor: Any) -> list[str]:
    """Square probe: must be exact. Non-square (padding): a difference is reported as a warning."""
    warnings: list[str] = []
    for image, square in ((probe_image(37, 37), True), (probe_image(), False)):
        ours, theirs = _pixels(ours_processor, mode, llava_processor, image)
        if ours.shape != theirs.shape or float((ours - theirs).abs().max()) > 1e-6:
            if square or mode != "pad" or ours.shape != theirs.shape:
                diff = "shapes " + f"{tuple(ours.shape)} vs {tuple(theirs.shape)}" if ours.shape != theirs.shape \
                    else f"max difference {float((ours - theirs).abs().max()):.3g}"
                raise ExportError(f"{component_label(tower)}: LlavaImageProcessor cannot reproduce its image "
                                  f"processor {type(ours_processor).__name__} ({diff})")
            mean = list(getattr(ours_processor, "image_mean", []) or [])
            warnings.append(
                "pad preprocessing: transformers' LlavaImageProcessor fills the padding with "
                f"int(mean * 255) = {[int(m * 255) for m in mean]}, this checkpoint's own preprocessing pads "
                f"differently; non-square images differ in the padding "
                f"(max pixel difference {float((ours - theirs).abs().max()):.3g} after normalisation)"
            )
    return warnings


def _check_logits(ours_model: Any, llava: Any, template: Any, tokenizer: Any, processor: Any, image_token_id: int,
                  image_seq_len: int, ours_processor: Any, mode: str, vocab: int) -> float:
    import torch

    from tinyllava.data.images import preprocess_image

    image = probe_image(37, 37)
    conversation = PROBE_CONVERSATIONS[0]
    ours_ids: list[int] = []
    for tok in template.generation_prompt(conversation, tokenizer):
        ours_ids += [IMAGE_TOKEN_INDEX] * image_seq_len if tok == IMAGE_TOKEN_INDEX else [tok]
    text = processor.apply_chat_template(to_hf_messages(conversation), add_generation_prompt=True)
    inputs = processor(text=text, images=[image] if IMAGE_PLACEHOLDER in text else None, return_tensors="pt")
    with torch.no_grad():
        pixels = preprocess_image(image, ours_processor, mode).unsqueeze(0)
        ours = ours_model(input_ids=torch.tensor([ours_ids]), pixel_values=pixels).logits
        theirs = llava(**inputs).logits
    if ours.shape[1] != theirs.shape[1]:
        raise ExportError(f"the exported prompt has {theirs.shape[1]} positions, this checkpoint's {ours.shape[1]}")
    return float((ours[..., :vocab] - theirs[..., :vocab]).abs().max())


# -- the export -----------------------------------------------------------------------------------------
def export_hf_llava(checkpoint_dir: Path, output: Path, dtype: str = "float32", *, registry: Any = None,
                    overwrite: bool = False) -> Path:
    """Write `output`: a transformers LLaVA model folder (weights, config, processor, generation config, model
    card) equivalent to the tinyllava checkpoint `checkpoint_dir`. `dtype` is the saved dtype (`auto`: the LLM's).
    Raises ExportError (nothing written) when a component cannot be expressed or a check fails."""
    return export_hf_llava_report(checkpoint_dir, output, dtype, registry=registry, overwrite=overwrite).output


def export_hf_llava_report(checkpoint_dir: Path, output: Path, dtype: str = "float32", *, registry: Any = None,
                           overwrite: bool = False) -> ExportReport:
    """`export_hf_llava`, returning what was done (timings, image token, warnings)."""
    import torch
    from transformers import GenerationConfig, LlavaConfig, LlavaImageProcessorPil, LlavaProcessor

    from tinyllava.checkpoint.load import CheckpointError, load_checkpoint, read_manifest
    from tinyllava.interop.model_card import render_model_card
    from tinyllava.plugins.registry import get_registry

    started = time.perf_counter()
    checkpoint_dir, output = Path(checkpoint_dir), Path(output)
    if dtype not in DTYPES:
        raise ExportError(f"--dtype {dtype!r} is unknown; use one of {', '.join(DTYPES)}")
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not overwrite:
        raise ExportError(f"{output} already exists and is not empty; choose a new folder")
    if output.resolve() == checkpoint_dir.resolve():
        raise ExportError("the output folder must differ from the checkpoint folder")
    registry = registry or get_registry()
    try:
        manifest = read_manifest(checkpoint_dir)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None
    mode = manifest.get("image_preprocess", "square")
    specs = manifest["components"]
    components = {kind: registry.create(kind, specs[kind]["name"], specs[kind].get("options") or {})
                  for kind in ("llm", "vision_tower", "connector", "chat_template")}
    problems = [] if mode in IMAGE_MODES else [f"image_preprocess {mode!r}: LLaVA resizes or pads to a square only"]
    try:
        loaded = load_checkpoint(checkpoint_dir, registry=registry, merge_adapters=True)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None
    model, tokenizer = loaded.model, loaded.tokenizer
    saved_dtype = _dtype_name(next(model.language_model.parameters()).dtype) if dtype == "auto" else dtype
    model.float()
    modules = {"llm": model.language_model, "vision_tower": model.vision_tower, "connector": model.connector}
    template = components["chat_template"]
    parts, more = _collect_parts(components, modules)
    problems += more
    jinja = None
    tokenizer_chat_template = getattr(tokenizer, "chat_template", None)
    prepended = added_by_tokenizer(tokenizer)[0]
    try:
        jinja = template.hf_llava_export(tokenizer)
    except NotExportable as exc:
        problems.append(str(exc))
    if problems:
        raise ExportError(f"{checkpoint_dir} cannot be exported to transformers' LLaVA layout:\n"
                          + "\n".join(f"  - {p}" for p in problems))

    # the image token, and the embedding rows it needs
    language_model = model.language_model
    vocab = int(language_model.get_input_embeddings().weight.shape[0])
    image_token_id, added_token = _add_image_token(tokenizer)
    appended = max(0, image_token_id + 1 - vocab)
    if appended:
        _grow_embeddings(language_model, vocab + appended)
        parts["llm"] = components["llm"].hf_llava_export(language_model)

    image_seq_len = int(model.config.image_seq_len)
    tower, connector = parts["vision_tower"], parts["connector"]
    text_config = dict(parts["llm"].config)
    sidecar = {
        "format": EXPORT_FORMAT,
        "image_token": IMAGE_PLACEHOLDER,
        "image_token_id": image_token_id,
        "original_vocab_size": vocab,
        "appended_rows": appended,
        "added_image_token": added_token,
        "tokenizer_chat_template": tokenizer_chat_template,  # the processor's Jinja replaced it
        "tokenizer_add_bos_token": None if added_by_tokenizer(tokenizer)[0] == prepended else False,
        "image_preprocess": mode,
        "components": specs,
        "source": str(checkpoint_dir.resolve()),
        "tinyllava_version": manifest.get("tinyllava_version"),
    }
    llava_config = LlavaConfig(
        text_config=text_config,
        vision_config=tower.config,
        image_token_index=image_token_id,
        image_seq_length=image_seq_len,
        tie_word_embeddings=bool(text_config.get("tie_word_embeddings", False)),
        **{**tower.llava, **connector.llava},
        **{SIDECAR_KEY: sidecar},
    )
    llava = _build_llava(llava_config, _state_dict(parts, modules))

    image_processor = LlavaImageProcessorPil(**_image_processor_settings(loaded.image_processor, mode))
    tokenizer.chat_template = jinja
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=jinja,
                               image_token=IMAGE_PLACEHOLDER, **tower.processor)

    # checks on probes, before anything is written
    warnings = _check_pixels(components["vision_tower"], loaded.image_processor, mode, processor)
    _check_tokens(template, tokenizer, processor, image_seq_len, image_token_id, probe_image(37, 37))
    diff = _check_logits(model, llava, template, tokenizer, processor, image_token_id, image_seq_len,
                         loaded.image_processor, mode, vocab)
    if diff > LOGIT_TOLERANCE:
        raise ExportError(f"the exported model does not reproduce this checkpoint: max logit difference {diff:.3g} "
                          f"on a probe prompt (tolerance {LOGIT_TOLERANCE})")

    stop_ids = [int(i) for i in template.stop_token_ids(tokenizer)]
    generation = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=stop_ids if len(stop_ids) > 1 else stop_ids[0],
        pad_token_id=tokenizer.pad_token_id, suppress_tokens=[image_token_id], do_sample=False,
    )
    staging = output.with_name(f".{output.name}.exporting")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        llava.generation_config = generation
        llava.to(getattr(torch, saved_dtype)).save_pretrained(staging)
        _restore_tower_prefixes(staging, _tower_prefixes(llava))
        processor.save_pretrained(staging)
        seconds = time.perf_counter() - started
        report = ExportReport(output, saved_dtype, seconds, image_token_id, appended, diff, warnings)
        card = render_model_card(manifest=manifest, parts=parts, report=report, image_seq_len=image_seq_len,
                                 checkpoint_dir=checkpoint_dir, llava_config=llava_config)
        (staging / "README.md").write_text(card)
        if output.exists():
            shutil.rmtree(output)
        staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.seconds = time.perf_counter() - started
    return report


def _tower_prefixes(llava: Any) -> list[str]:
    """Prefixes transformers 5 strips from the tower's weight names when loading (e.g. CLIP's and SigLIP's
    `vision_model.`): transformers 4 and servers that follow its names (vLLM) need them."""
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    conversions = get_checkpoint_conversion_mapping(type(llava.model.vision_tower).__name__) or []
    return [c.prefix_to_remove for c in conversions
            if type(c).__name__ == "PrefixChange" and getattr(c, "prefix_to_remove", None)]


def _restore_tower_prefixes(folder: Path, prefixes: list[str]) -> None:
    """Rename `vision_tower.X` to `vision_tower.<prefix>.X` in the saved weights (one file or shards + index):
    the names LLaVA checkpoints have on the Hub, which transformers 5 reads too."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    if not prefixes:
        return
    prefix = "vision_tower."
    nested = prefix + ".".join(prefixes) + "."

    def rename(key: str) -> str:
        return nested + key[len(prefix):] if key.startswith(prefix) and not key.startswith(nested) else key

    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            if all(rename(k) == k for k in handle.keys()):  # noqa: SIM118 - safe_open has no __iter__
                continue
        state = load_file(str(file))
        save_file({rename(k): v for k, v in state.items()}, str(file), metadata={"format": "pt"})
    for index in folder.glob("*.safetensors.index.json"):
        data = json.loads(index.read_text())
        data["weight_map"] = {rename(k): v for k, v in data.get("weight_map", {}).items()}
        index.write_text(json.dumps(data, indent=2))


def read_sidecar(folder: Path) -> dict[str, Any] | None:
    """What the exporter recorded in an exported folder's config.json (None for other LLaVA folders)."""
    config = json.loads((Path(folder) / "config.json").read_text())
    return config.get(SIDECAR_KEY)
