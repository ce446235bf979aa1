"""The FastAPI app: OpenAI-compatible routes over a loaded Pipeline, the web page, health and metrics.

Every refusal is an `ApiError` rendered in OpenAI's error format; an unexpected failure is a 500 in the same format
and is logged, and the server keeps serving. Request bodies are read with a size cap, images are decoded and
preprocessed and prompts tokenised in worker threads (off the event loop, in parallel with generation), then the
request joins the batcher's queue.
"""

# no `from __future__ import annotations`: FastAPI reads the route signatures (Request is imported in create_app)
import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tinyllava.serving.batcher import SHUTTING_DOWN, Batcher, Job, Stats
from tinyllava.serving.config import ServeConfig
from tinyllava.serving.errors import ApiError, error_body
from tinyllava.serving.images import decode_data_url
from tinyllava.serving.protocol import ChatRequest, Conversation, parse_request, to_conversation
from tinyllava.serving.textstream import TextStream

log = logging.getLogger("tinyllava.serve")

STATIC_DIR = Path(__file__).parent / "static"
PIXEL_CACHE_SIZE = 32  # preprocessed images kept, by the hash of their data URL


def context_length(pipeline: Any) -> int:
    """Prompt + answer tokens the checkpoint takes: its training max_length, within the LLM's positions."""
    config = pipeline.model.config
    limit = int(getattr(config, "model_max_length", 0) or 0) or 2048
    text = getattr(config, "text_config", None) or {}
    positions = text.get("max_position_embeddings") if isinstance(text, dict) else None
    return min(limit, int(positions)) if positions else limit


def create_app(pipeline: Any, config: ServeConfig) -> Any:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    stats = Stats()
    batcher = Batcher(pipeline, max_batch=config.max_batch, max_wait_ms=config.max_wait_ms, stats=stats)
    encode_lock = threading.Lock()  # fast tokenizers must not be entered from two threads at once
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            batcher.stop()

    app = FastAPI(title="tinyllava", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher = batcher
    app.state.stats = stats

    # -- errors ------------------------------------------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> Any:
        stats.errors[exc.status] += 1
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> Any:
        stats.errors[exc.status_code] += 1
        return JSONResponse(error_body(str(exc.detail), "invalid_request_error" if exc.status_code < 500
                                       else "server_error"), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> Any:
        stats.errors[400] += 1
        return JSONResponse(error_body(f"invalid request: {exc.errors()[:1]}", "invalid_request_error"), 400)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> Any:
        stats.errors[500] += 1
        log.exception("unexpected error", exc_info=exc)
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}", "server_error"), 500)

    def check_key(request: Request) -> None:
        if not config.api_key:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "You didn't provide an API key: send it as 'Authorization: Bearer KEY' (the "
                                "server was started with --api-key)", code="invalid_api_key")
        if not hmac.compare_digest(token.strip().encode(), config.api_key.encode()):
            raise ApiError(401, "Incorrect API key provided", code="invalid_api_key")

    # -- page, health, metrics, models -------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index() -> Any:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": config.model_id, "auth_required": bool(config.api_key),
                "max_images": config.max_images, "context_length": config.context_length}

    @app.get("/metrics")
    async def metrics(request: Request) -> dict[str, Any]:
        check_key(request)
        return {**stats.as_dict(batcher.queued()),
                "config": {"max_batch": config.max_batch, "max_wait_ms": config.max_wait_ms}}

    def model_card() -> dict[str, Any]:
        return {"id": config.model_id, "object": "model", "created": created, "owned_by": "tinyllava"}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        check_key(request)
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str, request: Request) -> dict[str, Any]:
        check_key(request)
        if model_id != config.model_id:
            raise ApiError(404, f"The model '{model_id}' does not exist; this server serves '{config.model_id}'",
                           param="model", code="model_not_found")
        return model_card()

    # -- chat completions --------------------------------------------------------------------------------------
    async def read_json(request: Request) -> Any:
        limit = config.body_limit()
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"the request body is {declared} bytes; this server takes at most {limit}",
                           code="request_too_large")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"the request body is over {limit} bytes", code="request_too_large")
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"the request body is not valid JSON ({exc}); send a JSON object with "
                                f"'Content-Type: application/json'", code="invalid_json") from None

    pixel_cache: OrderedDict[str, Any] = OrderedDict()  # a conversation sends its image again every turn

    def image_pixels(url: str, param: str | None) -> Any:
        key = hashlib.sha256(url.encode()).hexdigest()
        with encode_lock:
            if key in pixel_cache:
                pixel_cache.move_to_end(key)
                return pixel_cache[key]
        image = decode_data_url(url, max_bytes=config.max_image_bytes, max_pixels=config.max_image_pixels,
                                param=param)
        try:
            pixels = pipeline.pixel_values(image)
        except Exception as exc:  # noqa: BLE001 - an image the processor cannot take is the request's fault
            raise ApiError(400, f"the image could not be preprocessed: {exc}", param=param,
                           code="invalid_image_format") from None
        with encode_lock:
            pixel_cache[key] = pixels
            while len(pixel_cache) > PIXEL_CACHE_SIZE:
                pixel_cache.popitem(last=False)
        return pixels

    def prepare(conversation: Conversation) -> tuple[list[int], Any]:
        image = pixels = None
        if conversation.image_url is not None:
            pixels = image_pixels(conversation.image_url, conversation.image_param)
            image = True  # encode_prompts only checks that the conversation has an image
        try:
            with encode_lock:
                rows = pipeline.encode_prompts([conversation.turns], [image])[0]
        except ValueError as exc:
            raise ApiError(400, f"the conversation does not fit the checkpoint's chat template: {exc}",
                           param="messages") from None
        return rows, pixels

    def answer_budget(request: ChatRequest, prompt_tokens: int) -> int:
        limit = config.context_length
        asked = request.max_new_tokens()
        param = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
        if prompt_tokens >= limit:
            raise ApiError(400, f"This model's maximum context length is {limit} tokens. However, your messages "
                                f"resulted in {prompt_tokens} tokens (image positions included). Please reduce the "
                                f"length of the messages.", param="messages", code="context_length_exceeded")
        if asked is None:
            return min(config.default_max_tokens, limit - prompt_tokens)
        if prompt_tokens + asked > limit:
            raise ApiError(400, f"This model's maximum context length is {limit} tokens. However, you requested "
                                f"{prompt_tokens + asked} tokens ({prompt_tokens} in the messages, {asked} in the "
                                f"completion). Please reduce the length of the messages or completion.",
                           param=param, code="context_length_exceeded")
        return asked

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        stats.requests += 1
        check_key(request)
        batcher.arriving += 1
        try:
            job, text, meta, chat = await receive(request)
        finally:
            batcher.arriving -= 1
        if chat.stream:
            include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
            return StreamingResponse(_sse(job, text, meta, len(job.rows), include_usage, stats),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            reason = await _collect(job, text)
        finally:
            job.cancelled = True
        stats.completed += 1
        return JSONResponse({  # plain JSON types already: no encoder pass
            **meta, "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text.final()},
                         "logprobs": None, "finish_reason": reason}],
            "usage": _usage(len(job.rows), len(text.ids)),
        })

    async def receive(request: Request) -> tuple[Job, TextStream, dict[str, Any], ChatRequest]:
        """Read, check and prepare the request, and queue its job."""
        chat = parse_request(await read_json(request))
        if chat.model != config.model_id:
            raise ApiError(404, f"The model '{chat.model}' does not exist; this server serves '{config.model_id}' "
                                f"(see /v1/models)", param="model", code="model_not_found")
        conversation = to_conversation(chat.messages, config.max_images)
        rows, pixels = await run_in_threadpool(prepare, conversation)
        max_tokens = answer_budget(chat, len(rows))
        stops = chat.stop_strings()
        temperature = chat.temperature if chat.temperature is not None else 0.0
        job = Job(rows=rows, pixels=pixels, max_tokens=max_tokens, temperature=temperature,
                  top_p=chat.top_p if chat.top_p is not None else 1.0,
                  seed=chat.seed if temperature > 0 else None, want_tokens=bool(chat.stream or stops))
        batcher.submit(job)
        meta = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": config.model_id}
        return job, TextStream(pipeline.tokenizer, stops), meta, chat

    return app


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _collect(job: Job, text: TextStream) -> str:
    """Wait for the whole answer; the finish reason ("stop" or "length")."""
    while True:
        kind, value = await job.events.get()
        if kind == "token":
            text.push(value)
            if text.stopped:
                return "stop"
        elif kind == "done":
            if not job.want_tokens:
                text.ids = list(job.tokens)
            return "stop" if value == "stop" else "length"
        else:
            busy = value == SHUTTING_DOWN
            raise ApiError(503 if busy else 500, str(value), code="unavailable" if busy else "generation_failed")


async def _sse(job: Job, text: TextStream, meta: dict[str, Any], prompt_tokens: int, include_usage: bool,
               stats: Stats) -> AsyncIterator[str]:
    """OpenAI's chunk stream: the role, content pieces, the finish reason, usage if asked, then [DONE]."""

    def chunk(delta: dict[str, Any], reason: str | None = None) -> str:
        body = {**meta, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}]}
        return f"data: {json.dumps(body)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        while True:
            kind, value = await job.events.get()
            if kind == "token":
                piece = text.push(value)
                if piece:
                    yield chunk({"content": piece})
                if text.stopped:
                    reason = "stop"
                    break
            elif kind == "done":
                reason = "stop" if value == "stop" else "length"
                break
            else:
                stats.errors[500] += 1
                yield f"data: {json.dumps(error_body(str(value), 'server_error', code='generation_failed'))}\n\n"
                yield "data: [DONE]\n\n"
                return
        rest = text.finish()
        if rest:
            yield chunk({"content": rest})
        yield chunk({}, reason)
        if include_usage:
            body = {**meta, "object": "chat.completion.chunk", "choices": [],
                    "usage": _usage(prompt_tokens, len(text.ids))}
            yield f"data: {json.dumps(body)}\n\n"
        yield "data: [DONE]\n\n"
        stats.completed += 1
    finally:
        job.cancelled = True
