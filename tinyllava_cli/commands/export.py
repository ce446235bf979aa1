"""`tinyllava export --model DIR --to hf-llava --output OUT`: a checkpoint in another toolkit's layout."""

from __future__ import annotations

from pathlib import Path

from tinyllava_cli.commands.common import console, fail

TARGETS = ("hf-llava",)


def export(model: Path, to: str, output: Path, dtype: str) -> int:
    if to not in TARGETS:
        return fail(f"--to {to!r} is unknown; available: {', '.join(TARGETS)}")
    if not model.is_dir():
        return fail(f"--model {model} is not a directory; give a tinyllava checkpoint folder (e.g. runs/NAME/latest)")
    from tinyllava.interop.export_hf_llava import ExportError, export_hf_llava_report

    try:
        report = export_hf_llava_report(model, output, dtype)
    except ExportError as exc:
        return fail(f"{exc}\nnothing was written")
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    appended = (f", {report.appended_rows} embedding row(s) appended for it" if report.appended_rows else "")
    console.print(f"exported {model} to transformers' LLaVA layout ({report.dtype}) in {report.seconds:.1f} s; "
                  f"<image> is token {report.image_token_id}{appended}; max probe logit difference "
                  f"{report.max_logit_diff:.2g}", highlight=False)
    console.print(f"load it with LlavaForConditionalGeneration.from_pretrained({str(output)!r}) and "
                  f"AutoProcessor.from_pretrained({str(output)!r}); see {output / 'README.md'}", highlight=False)
    return 0
