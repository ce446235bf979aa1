"""`tinyllava serve` against a live server on 127.0.0.1 (one per module, started here through the CLI): the
official openai client, raw HTTP for every error, 32 concurrent clients answered as `tinyllava predict` answers
them, batched together, and the web page in the system's headless Chromium."""

from __future__ import annotations

import asyncio
import base64
import copy
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import httpx
import pytest

from tinyllava.testing.timeouts import SUBPROCESS_TIMEOUT_S

EXE = str(Path(sys.executable).parent / "tinyllava")
KEY = "sk-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_IMAGE_BYTES = 40_000
ANSWER_TOKENS = 12  # the server's --max-tokens: what a request that sets no limit gets
CHROMIUM = "/usr/bin/chromium"


def get(url: str, headers: dict | None = None) -> httpx.Response:
    return httpx.get(url, headers=headers, timeout=SUBPROCESS_TIMEOUT_S)


def png_bytes(size: tuple[int, int], colour: tuple[int, int, int], noise: bool = False) -> bytes:
    from PIL import Image

    if noise:
        image = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    else:
        image = Image.new("RGB", size, colour)
        image.paste((255 - colour[0], colour[1], 255 - colour[2]), (2, 3, size[0] // 2, size[1] // 3))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def data_url(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header that claims a huge canvas (the pixel data is never reached)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, reference Pipeline on the same checkpoint, folder): the server runs `tinyllava serve` in a
    subprocess; Ctrl-C (SIGINT) must stop it cleanly at the end."""
    from tinyllava.inference import Pipeline
    from tinyllava.testing import save_and_reload_tiny
    from tinyllava.testing.tiny import TINY_MODEL

    root = tmp_path_factory.mktemp("serve")
    llm = copy.deepcopy(TINY_MODEL["llm"])
    llm["config"]["max_position_embeddings"] = 512  # room for a few turns (the template's system prompt is long)
    llm["config"]["initializer_range"] = 0.2  # answers that differ by image and question (0.02: ':::' for all)
    _, loaded = save_and_reload_tiny(root / "ckpt", llm=llm, max_length=512)
    log = (root / "server.log").open("w")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "250"}
    proc = subprocess.Popen(
        [EXE, "serve", "--model", str(root / "ckpt"), "--port", "0", "--api-key", KEY, "--max-batch", "32",
         "--max-wait-ms", "50", "--max-image-bytes", str(MAX_IMAGE_BYTES), "--max-image-pixels", "1000000",
         "--max-tokens", str(ANSWER_TOKENS)],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
    url = None
    while url is None:
        text = (root / "server.log").read_text()
        match = re.search(r"at (http://127\.0\.0\.1:\d+)", text)
        if match:
            url = match[1]
        elif proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the server did not start:\n{text}")
        else:
            time.sleep(0.2)
    while get(f"{url}/health").status_code != 200:  # listening before it prints
        time.sleep(0.1)
    yield url, Pipeline(loaded), root
    proc.send_signal(signal.SIGINT)
    code = proc.wait(SUBPROCESS_TIMEOUT_S)
    log.close()
    text = (root / "server.log").read_text()
    assert code == 0 and "server stopped" in text and "Traceback" not in text, text


def ask(image: bytes | None, question: str, **extra) -> dict:
    content = question if image is None else [{"type": "image_url", "image_url": {"url": data_url(image)}},
                                              {"type": "text", "text": question}]
    return {"model": "ckpt", "messages": [{"role": "user", "content": content}], **extra}


def reference(pipe, turns: list[dict], image, max_new_tokens: int) -> str:
    """The answer generated alone, greedy, as predict/chat generate it."""
    from tinyllava.inference.pipeline import GenerationSettings

    return pipe.answer([turns], [image], GenerationSettings(max_new_tokens=max_new_tokens))[0]


def client(url: str):
    from openai import OpenAI

    return OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=SUBPROCESS_TIMEOUT_S)


def pil(raw: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(raw)).convert("RGB")


# -- the official client ----------------------------------------------------------------------------------------
def test_models_and_health(server):
    url, _, _ = server
    assert [m.id for m in client(url).models.list().data] == ["ckpt"]
    health = get(f"{url}/health").json()
    assert health["status"] == "ok" and health["auth_required"] is True and health["context_length"] == 512


def test_image_chat_with_the_openai_client_streamed_and_not(server):
    url, pipe, _ = server
    raw = png_bytes((40, 30), (200, 20, 20))
    body = ask(raw, "What colour is the shape?", max_tokens=9)
    api = client(url)
    done = api.chat.completions.create(**body)
    expected = reference(pipe, [{"from": "human", "value": "<image>\nWhat colour is the shape?"}], pil(raw), 9)
    assert done.choices[0].message.content == expected and done.choices[0].message.role == "assistant"
    prompt = pipe.encode_prompts([[{"from": "human", "value": "<image>\nWhat colour is the shape?"}]], [pil(raw)])[0]
    assert done.usage.prompt_tokens == len(prompt)
    assert 1 <= done.usage.completion_tokens <= 9
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    assert done.choices[0].finish_reason == ("length" if done.usage.completion_tokens == 9 else "stop")

    chunks = list(api.chat.completions.create(**body, stream=True, stream_options={"include_usage": True}))
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([p for p in pieces if p]) >= 2  # the answer came in pieces
    assert "".join(pieces) == expected
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == done.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == done.usage.completion_tokens
    assert len({c.id for c in chunks}) == 1


def test_sse_stream_ends_with_done(server):
    url, _, _ = server
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=ask(None, "Hi", stream=True, max_tokens=4),
                      headers=AUTH, timeout=SUBPROCESS_TIMEOUT_S) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"


def test_multi_turn_uses_the_checkpoint_template(server):
    url, pipe, _ = server
    raw = png_bytes((32, 32), (20, 200, 20))
    messages = [{"role": "user", "content": [{"type": "text", "text": "Describe it."},
                                             {"type": "image_url", "image_url": {"url": data_url(raw)}}]},
                {"role": "assistant", "content": "A green square."},
                {"role": "user", "content": [{"type": "text", "text": "And the colour?"}]}]
    got = client(url).chat.completions.create(model="ckpt", messages=messages, max_completion_tokens=7)
    turns = [{"from": "human", "value": "<image>\nDescribe it."}, {"from": "gpt", "value": "A green square."},
             {"from": "human", "value": "And the colour?"}]
    assert got.choices[0].message.content == reference(pipe, turns, pil(raw), 7)


def test_stop_strings_cut_the_answer_streamed_or_not(server):
    url, pipe, _ = server
    raw = png_bytes((32, 32), (20, 20, 200))
    full = reference(pipe, [{"from": "human", "value": "<image>\nWhere?"}], pil(raw), 16)
    assert len(full) >= 6, full
    stop = full[3:5]
    expected = full[:full.find(stop)]
    api = client(url)
    got = api.chat.completions.create(**ask(raw, "Where?", max_tokens=16, stop=[stop, "never-seen"]))
    assert got.choices[0].message.content == expected and got.choices[0].finish_reason == "stop"
    streamed = api.chat.completions.create(**ask(raw, "Where?", max_tokens=16, stop=stop), stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == expected


def test_seeded_sampling_repeats(server):
    url, _, _ = server
    api = client(url)
    body = ask(None, "Tell me a story", max_tokens=10, temperature=1.5, top_p=0.9, seed=11)
    first = api.chat.completions.create(**body).choices[0].message.content
    assert api.chat.completions.create(**body).choices[0].message.content == first


# -- errors -----------------------------------------------------------------------------------------------------
SMALL = png_bytes((8, 8), (1, 2, 3))
CASES = {
    "malformed json": (b'{"model": "ckpt", "messages": [', AUTH, 400, "not valid JSON"),
    "not an object": ([1, 2], AUTH, 400, "JSON object"),
    "messages not a list": ({"model": "ckpt", "messages": "hi"}, AUTH, 400, "'messages'"),
    "max_tokens a string": (ask(None, "hi", max_tokens="ten"), AUTH, 400, "'max_tokens'"),
    "temperature out of range": (ask(None, "hi", temperature=7), AUTH, 400, "'temperature'"),
    "content of the wrong type": ({"model": "ckpt", "messages": [{"role": "user", "content": 5}]}, AUTH, 400,
                                  "messages.0.content"),
    "unknown argument": (ask(None, "hi", best_of=3), AUTH, 400, "Unrecognized request argument supplied: best_of"),
    "no model": ({"messages": [{"role": "user", "content": "hi"}]}, AUTH, 400, "Missing required parameter"),
    "n above 1": (ask(None, "hi", n=2), AUTH, 400, "n=2"),
    "seed out of range": (ask(None, "hi", temperature=1, seed=2**70), AUTH, 400, "'seed'"),
    "two images": ({"model": "ckpt", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(SMALL)}},
        {"type": "image_url", "image_url": {"url": data_url(SMALL)}}, {"type": "text", "text": "Same?"}]}]},
        AUTH, 400, "too many images"),
    "remote url": ({"model": "ckpt", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}, AUTH, 400,
        "remote image URLs are not supported"),
    "bad base64": ({"model": "ckpt", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@@"}}]}]}, AUTH, 400, "not valid base64"),
    "not an image": (ask(b"hello, not a picture", "hi"), AUTH, 400, "not an image format"),
    "image over the byte limit": (ask(png_bytes((150, 150), (0, 0, 0), noise=True), "hi"), AUTH, 400,
                                  f"at most {MAX_IMAGE_BYTES} bytes"),
    "image over the pixel limit": (ask(png_bytes((1100, 1000), (0, 0, 0)), "hi"), AUTH, 400,
                                   "1100x1000 = 1100000 pixels; this server takes at most 1000000 pixels"),
    "decompression bomb": (ask(bomb_png(), "hi"), AUTH, 400, "at most 1000000 pixels"),
    "prompt over the context": (ask(None, "word " * 600), AUTH, 400, "maximum context length is 512"),
    "answer over the context": (ask(None, "hi", max_tokens=5000), AUTH, 400, "maximum context length is 512"),
    "system message": ({"model": "ckpt", "messages": [{"role": "system", "content": "Be brief."},
                                                      {"role": "user", "content": "hi"}]}, AUTH, 400, "system"),
    "ends with the assistant": ({"model": "ckpt", "messages": [{"role": "user", "content": "hi"},
                                                               {"role": "assistant", "content": "yo"}]}, AUTH, 400,
                                "last message must be from the user"),
    "image tag typed in": (ask(None, "look: <image>"), AUTH, 400, "reserved"),
    "unknown model": ({**ask(None, "hi"), "model": "gpt-4o"}, AUTH, 404, "does not exist"),
    "no key": (ask(None, "hi"), {}, 401, "didn't provide an API key"),
    "wrong key": (ask(None, "hi"), {"Authorization": "Bearer nope"}, 401, "Incorrect API key"),
    "body over the limit": (b" " * (MAX_IMAGE_BYTES * 4 // 3 + 1024 * 1024 + 10), AUTH, 413, "request body"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_requests_get_openai_errors_and_the_server_lives_on(server, case):
    url, _, _ = server
    body, headers, status, needle = CASES[case]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(f"{url}/v1/chat/completions", content=content,
                          headers={**headers, "Content-Type": "application/json"}, timeout=SUBPROCESS_TIMEOUT_S)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert needle in error["message"], error
    assert error["type"] == {400: "invalid_request_error", 413: "invalid_request_error", 404: "not_found_error",
                             401: "authentication_error"}[status]
    assert set(error) == {"message", "type", "param", "code"}
    assert get(f"{url}/health").json()["status"] == "ok"


def test_routes_need_the_key_and_errors_keep_the_format(server):
    url, _, _ = server
    assert get(f"{url}/v1/models").status_code == 401
    assert get(f"{url}/metrics").status_code == 401
    missing = get(f"{url}/v1/nothing-here", headers=AUTH)
    assert missing.status_code == 404 and "error" in missing.json()


# -- concurrency and batching -----------------------------------------------------------------------------------
def test_32_concurrent_clients_get_their_predict_answers_in_batches(server, tmp_path):
    from tinyllava.components.benchmark import EvalItem
    from tinyllava.eval.runner import generate_answers

    url, pipe, _ = server
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]
    questions = ["What colour is the shape?", "Where is it?", "How many shapes are there?", "Is there a circle?",
                 "What shape is the red object?", "Describe the picture in detail, please."]
    items, bodies = [], []
    for i in range(32):
        max_tokens = 4 + i % 9
        if i % 8 == 7:  # a few text-only requests in the mix
            question = f"Say something about number {i}"
            items.append(EvalItem(str(i), question, None, max_tokens))
            bodies.append(ask(None, question, max_tokens=max_tokens))
            continue
        raw = png_bytes((32 + i % 5 * 8, 32 + i % 3 * 8), colours[i % 4])
        path = tmp_path / f"{i}.png"
        path.write_bytes(raw)
        question = questions[i % len(questions)]
        items.append(EvalItem(str(i), question, path, max_tokens))
        bodies.append(ask(raw, question, max_tokens=max_tokens))
    # what `tinyllava predict` writes for these inputs: its answering call, one question at a time (each request
    # has its own max_tokens here; predict's batches share one limit)
    expected = generate_answers(pipe, items, batch_size=1)
    before = get(f"{url}/metrics", headers=AUTH).json()

    async def run_all() -> list[str]:
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=SUBPROCESS_TIMEOUT_S) as http:
            async def one(body: dict) -> str:
                response = await http.post("/v1/chat/completions", json=body)
                assert response.status_code == 200, response.text
                return response.json()["choices"][0]["message"]["content"]

            return await asyncio.gather(*(one(b) for b in bodies))

    answers = asyncio.run(run_all())
    assert answers == [expected[str(i)] for i in range(32)]
    after = get(f"{url}/metrics", headers=AUTH).json()
    batches = after["batches_total"] - before["batches_total"]
    sizes = {int(k): v - before["batch_size"]["histogram"].get(k, 0)
             for k, v in after["batch_size"]["histogram"].items()}
    assert sum(size * count for size, count in sizes.items()) == 32
    assert batches < 32 and max(s for s, c in sizes.items() if c > 0) >= 2, after
    assert after["completed_total"] - before["completed_total"] == 32


# -- the web page in a real browser -----------------------------------------------------------------------------
def test_chat_page_in_headless_chromium(server, tmp_path, record_property):
    from playwright.sync_api import expect, sync_playwright

    url, pipe, _ = server
    red, blue = png_bytes((48, 48), (220, 40, 40)), png_bytes((40, 56), (40, 40, 220))
    (tmp_path / "red.png").write_bytes(red)
    first, second = "What colour is the shape?", "And where is it?"
    turns = [{"from": "human", "value": f"<image>\n{first}"}]
    answer1 = reference(pipe, turns, pil(red), ANSWER_TOKENS)
    answer2 = reference(pipe, [*turns, {"from": "gpt", "value": answer1}, {"from": "human", "value": second}],
                        pil(red), ANSWER_TOKENS)
    answer3 = reference(pipe, [{"from": "human", "value": f"<image>\n{first}"}], pil(blue), ANSWER_TOKENS)
    assert len({answer1, answer2, answer3}) > 1
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 780})  # a phone
            wait_ms = SUBPROCESS_TIMEOUT_S * 100  # a busy machine is slow, not broken (a wrong answer waits this long)
            page.set_default_timeout(wait_ms)
            expect.set_options(timeout=wait_ms)
            page.goto(url + "/")
            expect(page.locator("#model")).to_have_text("ckpt")
            expect(page.locator("#key-row")).to_be_visible()
            page.fill("#api-key", KEY)
            # pick an image, ask, watch the answer arrive
            page.set_input_files("#file", str(tmp_path / "red.png"))
            expect(page.locator("#preview")).to_be_visible()
            page.fill("#input", first)
            page.click("#send")
            expect(page.locator(".msg.assistant.done")).to_have_count(1)
            expect(page.locator(".msg.assistant").nth(0)).to_have_text(answer1)
            # continue the conversation about the same image
            page.fill("#input", second)
            page.keyboard.press("Enter")
            expect(page.locator(".msg.assistant.done")).to_have_count(2)
            expect(page.locator(".msg.assistant").nth(1)).to_have_text(answer2)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
            shot = tmp_path / "serve_page.png"
            page.screenshot(path=str(shot), full_page=True)
            # start over, then drop another image on the page
            page.click("#new-chat")
            expect(page.locator(".msg")).to_have_count(0)
            page.evaluate("""(b64) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const dt = new DataTransfer();
                dt.items.add(new File([bytes], "blue.png", {type: "image/png"}));
                window.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
            }""", base64.b64encode(blue).decode())
            expect(page.locator("#preview")).to_be_visible()
            page.fill("#input", first)
            page.click("#send")
            expect(page.locator(".msg.assistant.done")).to_have_count(1)
            expect(page.locator(".msg.assistant")).to_have_text(answer3)
        finally:
            browser.close()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    artifacts = Path(os.environ.get("TINYLLAVA_TEST_ARTIFACTS", Path(tempfile.gettempdir()) / "tinyllava-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, artifacts / "serve_page.png")
    record_property("screenshot", str(artifacts / "serve_page.png"))
    print(f"chat page screenshot: {artifacts / 'serve_page.png'}")


# -- user errors at start-up ------------------------------------------------------------------------------------
def test_start_up_mistakes_are_one_line_errors(tmp_path, monkeypatch):
    import socket

    from typer.testing import CliRunner

    from tinyllava_cli.app import app

    runner = CliRunner()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        taken = runner.invoke(app, ["serve", "--model", str(tmp_path), "--port", str(port)])
    assert taken.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in taken.output and "--port" in taken.output
    missing = runner.invoke(app, ["serve", "--model", str(tmp_path / "nope"), "--port", "0"])
    assert missing.exit_code == 2 and "not a tinyllava checkpoint" in missing.output
    assert "Traceback" not in missing.output
    wrong = runner.invoke(app, ["serve", "--model", str(tmp_path), "--max-batch", "0"])
    assert wrong.exit_code == 2 and "--max-batch 0: give at least 1" in wrong.output
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the serve extra were not installed
    bare = runner.invoke(app, ["serve", "--model", str(tmp_path), "--port", "0"])
    assert bare.exit_code == 2 and "pip install 'tinyllava[serve]'" in bare.output
