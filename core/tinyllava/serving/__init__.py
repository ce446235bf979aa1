"""`tinyllava serve`: an OpenAI-compatible chat API with dynamic batching, and a web chat page.

Modules: `errors` (OpenAI's error format), `images` (data: URLs with byte/pixel limits), `protocol` (the request
schema and messages -> conversation), `textstream` (incremental text, stop strings), `batcher` (requests ->
one batched generate call), `app` (the FastAPI routes), `static/` (the page, shipped as package data).
Everything heavy (fastapi, torch) is imported by `app` and `batcher` only.
"""

from tinyllava.serving.config import ServeConfig

__all__ = ["ServeConfig"]
