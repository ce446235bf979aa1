"""The README.md written next to an exported model: components, training spec, how to load it, provenance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LOAD_SNIPPET = '''```python
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration

model = LlavaForConditionalGeneration.from_pretrained("{path}")
processor = AutoProcessor.from_pretrained("{path}")
messages = [{{"role": "user", "content": [{{"type": "image"}}, {{"type": "text", "text": "What is in the picture?"}}]}}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
inputs = processor(text=prompt, images=[Image.open("picture.png")], return_tensors="pt")
out = model.generate(**inputs, max_new_tokens=64)
print(processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```'''


def _yaml(data: Any) -> str:
    try:
        import yaml

        return yaml.safe_dump(data, sort_keys=False).rstrip()
    except ImportError:  # pragma: no cover - pyyaml is a core dependency
        return json.dumps(data, indent=2)


def _component_line(kind: str, spec: dict[str, Any]) -> str:
    options = spec.get("options") or {}
    shown = {k: v for k, v in options.items() if v not in (None, [], {})}
    return f"| {kind} | `{spec.get('name')}` | `{json.dumps(shown, sort_keys=True)}` |"


def _title(manifest: dict[str, Any], checkpoint_dir: Path) -> str:
    """The run's name (else the folder's) and the stage, when the checkpoint records them."""
    name = (manifest.get("spec") or {}).get("name") or Path(checkpoint_dir).resolve().name
    stage = manifest.get("stage")
    return f"{name}, stage {stage}" if stage else str(name)


def render_model_card(*, manifest: dict[str, Any], parts: dict[str, Any], report: Any, image_seq_len: int,
                      checkpoint_dir: Path, llava_config: Any) -> str:
    components = manifest.get("components", {})
    plugins = manifest.get("plugins", {})
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: image-text-to-text",
        "tags: [llava, tinyllava]",
        "---",
        "",
        f"# {_title(manifest, checkpoint_dir)} (LLaVA layout)",
        "",
        "A small LLaVA-style model trained with tinyllava and exported to transformers' own "
        "`LlavaForConditionalGeneration` layout: plain `transformers` loads it, with no remote code.",
        "",
        "## Components",
        "",
        "| kind | component | options |",
        "|---|---|---|",
        *[_component_line(kind, components[kind]) for kind in ("llm", "vision_tower", "connector", "chat_template")
          if kind in components],
        "",
        f"- image preprocessing: `{manifest.get('image_preprocess', 'square')}`; {image_seq_len} image tokens "
        f"per image (`image_seq_length`), `vision_feature_layer` {llava_config.vision_feature_layer}, "
        f"`vision_feature_select_strategy` `{llava_config.vision_feature_select_strategy}`",
        *[f"- {note}" for part in parts.values() for note in part.notes],
        f"- image token: `<image>` = id {report.image_token_id}"
        + (f"; {report.appended_rows} zero row(s) appended to the embedding (and lm_head), suppressed in "
           "generation (`generation_config.suppress_tokens`)" if report.appended_rows else
           "; no embedding row was added"),
        f"- saved dtype: `{report.dtype}`",
        "",
        "## How to load it",
        "",
        LOAD_SNIPPET.format(path="path/to/this/folder"),
        "",
        "The chat template (`chat_template.jinja`) writes the prompt exactly as the model was trained; the "
        "processor expands each `<image>` into the image tokens. The export was checked to give the same "
        "token ids, pixels and logits as the tinyllava checkpoint "
        + (f"(max logit difference {report.max_logit_diff:.2g} in float32 on a probe prompt)."
           if report.max_logit_diff is not None else "."),
        "Pixels match with transformers' PIL image-processing backend (used when torchvision is not installed, "
        "or with `AutoProcessor.from_pretrained(path, backend=\"pil\")`). For batched generation pad on the left "
        "(`processor.tokenizer.padding_side = \"left\"`).",
    ]
    if report.warnings:
        lines += ["", "## Known differences", "", *[f"- {w}" for w in report.warnings]]
    spec = manifest.get("spec")
    lines += ["", "## Training", ""]
    if manifest.get("stage"):
        lines.append(f"Last stage: `{manifest['stage']}`.")
    if spec:
        lines += ["", "The resolved run spec:", "", "```yaml", _yaml(spec), "```"]
    else:
        lines.append("The checkpoint records no run spec.")
    lines += [
        "",
        "## Provenance",
        "",
        f"- exported from `{Path(checkpoint_dir).resolve()}` (checkpoint created {manifest.get('created')}, "
        f"tinyllava {manifest.get('tinyllava_version')})",
        *[f"- plugin `{key}`: {info.get('distribution')} {info.get('version')}" for key, info in plugins.items()],
    ]
    if manifest.get("merged_from") or manifest.get("adapters"):
        lines.append("- LoRA adapters were merged into the weights before export")
    lines.append("- `config.json` → `tinyllava_export` records the export (image token, appended rows, components)")
    return "\n".join(lines) + "\n"
