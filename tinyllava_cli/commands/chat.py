"""`tinyllava chat`: multi-turn chat about one image; the history keeps every full answer."""

from __future__ import annotations

from pathlib import Path

from tinyllava_cli.commands.common import check_placement, console, fail, load_pipeline


def chat(model: Path, image: Path | None, max_new_tokens: int, temperature: float, device: str = "auto",
         dtype: str = "auto") -> int:
    from tinyllava.inference.pipeline import GenerationSettings

    problem = check_placement(device, dtype)
    if problem:
        return fail(problem)
    if image is not None and not Path(image).is_file():
        return fail(f"image {image} does not exist")
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
        answer = pipeline.answer([history], [image], settings)[0]
        history.append({"from": "gpt", "value": answer})
        console.print(f"[bold]assistant>[/] {answer}", highlight=False)
    return 0
