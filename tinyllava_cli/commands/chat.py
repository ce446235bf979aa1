"""`tinyllava chat`: multi-turn chat about one image; the history keeps every full answer."""

from __future__ import annotations

from pathlib import Path

from tinyllava_cli.commands.common import (
    console,
    early_problem,
    err_console,
    fail,
    image_problem,
    load_pipeline,
)


def chat(model: Path, image: Path | None, max_new_tokens: int, temperature: float, device: str = "auto",
         dtype: str = "auto") -> int:
    problem = early_problem(model, device, dtype)  # before torch: a misspelt flag or path is answered at once
    if problem:
        return fail(problem)
    if image is not None:
        problem = image_problem(Path(image))
        if problem:
            return fail(problem)
    from tinyllava.inference.pipeline import GenerationSettings

    pipeline, problem = load_pipeline(model, device, dtype)
    if problem:
        return fail(problem)
    settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature)
    history: list[dict[str, str]] = []
    console.print("chat: type a message; an empty line or /exit ends the chat")
    while True:
        try:
            text = console.input("[bold]user>[/] ")
        except EOFError:
            break
        text = text.strip()
        if not text or text == "/exit":
            break
        if not history and image is not None:
            text = f"<image>\n{text}"
        history.append({"from": "human", "value": text})
        try:
            answer = pipeline.answer([history], [image], settings)[0]
        except (OSError, ValueError, RuntimeError) as exc:  # this turn fails; the chat goes on without it
            history.pop()
            err_console.print(f"[bold red]error:[/] this message could not be answered: {type(exc).__name__}: "
                              f"{exc}", highlight=False)
            continue
        history.append({"from": "gpt", "value": answer})
        console.print(f"[bold]assistant>[/] {answer}", highlight=False)
    return 0
