"""Jinja chat templates equivalent to the segmented templates, for an exported processor.

The Jinja must give, after `processor(text=...)` tokenises it, exactly the ids the template's
`generation_prompt` gives (image tokens aside). So it reproduces the segments' text, moves `<image>` as
`image_first` / `image_last` do, and decides the BOS from what the tokenizer does by itself: a tokenizer
that prepends BOS on `tokenizer(text)` gets no BOS in the text (else it would be doubled), one that does not
gets `{{ bos_token }}`; one that prepends BOS to a template without it has that switched off. The exporter
checks the equality on probe conversations before writing anything.

Messages may be HF style (`content` a list of `{"type": "image"}` / `{"type": "text", "text": ...}`) or
plain strings holding `<image>`; system messages are ignored (the templates have a fixed system prompt), and
turns before the first user turn are skipped, as `split_rounds` does.
"""

from __future__ import annotations

import json
from typing import Any

from tinyllava.constants import IMAGE_PLACEHOLDER
from tinyllava.interop.export_contract import NotExportable, component_label

_MARK = "\x00content\x00"

# sets `n` (images in the message) and `text` (its text, the image tags removed) for `message`
_READ_MESSAGE = (
    "{%- if message['content'] is string -%}"
    "{%- set n = (message['content'].split(IMG) | length) - 1 -%}"
    "{%- set text = message['content'].replace(IMG, '') -%}"
    "{%- else -%}"
    "{%- set n = message['content'] | selectattr('type', 'equalto', 'image') | list | length -%}"
    "{%- set text = message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') "
    "| join('') -%}"
    "{%- endif -%}"
)


def literal(text: str) -> str:
    """A Jinja string literal for `text` (Jinja decodes the same escapes JSON writes)."""
    return json.dumps(text, ensure_ascii=False)


def added_by_tokenizer(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids `tokenizer(text)` puts before and after the text's own ids."""
    probe = "tinyllava"
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            return full[:start], full[start + len(plain):]
    return full, []


def bos_expression(template: Any, tokenizer: Any, wants_bos: bool) -> str:
    """`{{- bos_token -}}`, or nothing when the tokenizer adds it itself; NotExportable when they disagree.

    A tokenizer that prepends BOS to a template without one (Phi-3's with the `phi` template) has it switched
    off (`add_bos_token = False`, saved with the exported tokenizer): `tokenizer` is the export's own copy."""
    label = component_label(template)
    before, after = added_by_tokenizer(tokenizer)
    bos = tokenizer.bos_token_id
    if after:
        raise NotExportable(label, f"the tokenizer appends {after} to every text; the processor would put them "
                                   "after the prompt, where the model never saw them")
    if before == [bos] and not wants_bos and hasattr(tokenizer, "add_bos_token"):
        tokenizer.add_bos_token = False  # the export's own copy: its processor must not add a BOS ours never had
        before, after = added_by_tokenizer(tokenizer)
    if before and (before != [bos] or not wants_bos):
        raise NotExportable(label, f"the tokenizer prepends {before} to every text, which this template does not "
                                   "start with; the exported processor would feed them to the model")
    if wants_bos and bos is not None and not before:
        return "{{- bos_token -}}"
    return ""


def _split(fmt: str, **values: str) -> tuple[str, str]:
    text = fmt.format(content=_MARK, **values)
    head, _, tail = text.partition(_MARK)
    return head, tail


def segmented_jinja(template: Any, tokenizer: Any) -> str:
    """The Jinja for a `tinyllava.templates.segmented.SegmentedTemplate` (the TinyLLaVA Factory family)."""
    eos = template._eos(tokenizer)
    user_head, user_tail = _split(template.user_format)
    answer_head, answer_tail = _split(template.answer_format, eos=eos)
    system_prefix = (template.system + " ") if template.system else ""
    placement = getattr(template.options, "image_placement", "first")
    if placement == "first":
        place = "{%- set text = (IMG + '\\n') * n + (text | trim) -%}"
    else:
        place = "{%- set text = (text | trim) + ('\\n' + IMG) * n -%}"
    return "".join([
        f"{{%- set IMG = {literal(IMAGE_PLACEHOLDER)} -%}}",
        "{%- set ns = namespace(started=false) -%}",
        bos_expression(template, tokenizer, bool(getattr(template, "add_bos", False))),
        "{%- for message in messages -%}",
        _READ_MESSAGE,
        "{%- if message['role'] == 'user' -%}",
        "{%- if n > 0 -%}", place, "{%- endif -%}",
        f"{{%- if not ns.started -%}}{{{{- {literal(system_prefix)} -}}}}{{%- endif -%}}",
        f"{{{{- {literal(user_head)} + text + {literal(user_tail)} + {literal(template.assistant_marker)} -}}}}",
        "{%- set ns.started = true -%}",
        "{%- elif message['role'] == 'assistant' and ns.started -%}",
        f"{{{{- {literal(answer_head)} + text + {literal(answer_tail)} -}}}}",
        "{%- endif -%}",
        "{%- endfor -%}",
    ])


def caption_jinja(template: Any, tokenizer: Any) -> str:
    """The Jinja for a `CaptionTemplate` (stage-1 `pretrain`): BOS and the image; then, unless a generation prompt
    is asked for, the first answer as the caption. Questions are dropped, as the template drops them."""
    return "".join([
        bos_expression(template, tokenizer, bool(getattr(template, "add_bos", False))),
        f"{{{{- {literal(IMAGE_PLACEHOLDER)} -}}}}",
        "{%- for message in messages if message['role'] == 'assistant' and not add_generation_prompt -%}",
        "{%- if loop.first -%}",
        "{%- if message['content'] is string -%}{{- message['content'] -}}"
        "{%- else -%}{{- message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') "
        "| join('') -}}{%- endif -%}",
        f"{{{{- {literal(template.caption_end)} -}}}}",
        "{%- endif -%}",
        "{%- endfor -%}",
    ])


def to_hf_messages(conversation: list[dict[str, str]]) -> list[dict[str, Any]]:
    """LLaVA-format turns (`from`/`value`, `<image>` in the text) -> HF chat messages with image parts."""
    messages = []
    for turn in conversation:
        role = {"human": "user", "gpt": "assistant", "system": "system"}.get(turn.get("from", ""), "user")
        value = str(turn.get("value", ""))
        if role == "user" and IMAGE_PLACEHOLDER in value:
            parts: list[dict[str, Any]] = [{"type": "image"}] * value.count(IMAGE_PLACEHOLDER)
            content: Any = [*parts, {"type": "text", "text": value.replace(IMAGE_PLACEHOLDER, "")}]
        else:
            content = [{"type": "text", "text": value}]
        messages.append({"role": role, "content": content})
    return messages
