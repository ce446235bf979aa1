"""`tinyllava serve`: load a checkpoint once and serve it over an OpenAI-compatible HTTP API (FastAPI + uvicorn),
with a web chat page at `/`. Runs until Ctrl-C."""

from __future__ import annotations

import socket
from pathlib import Path

from tinyllava_cli.commands.common import check_placement, console, fail, load_pipeline


def serve(model: Path, host: str, port: int, device: str, dtype: str, max_batch: int, max_wait_ms: float,
          api_key: str | None, max_image_bytes: int, max_image_pixels: int, max_tokens: int,
          model_name: str | None, log_level: str, threads: int = 0) -> int:
    problem = check_placement(device, dtype)
    if problem:
        return fail(problem)
    for flag, value, low in (("--max-batch", max_batch, 1), ("--max-image-bytes", max_image_bytes, 1),
                             ("--max-image-pixels", max_image_pixels, 1), ("--max-tokens", max_tokens, 1),
                             ("--port", port, 0), ("--threads", threads, 0)):
        if value < low:
            return fail(f"{flag} {value}: give at least {low}")
    if max_wait_ms < 0:
        return fail(f"--max-wait-ms {max_wait_ms}: give 0 or more")
    if not 0 <= port <= 65535:
        return fail(f"--port {port}: give a port from 0 to 65535 (0 picks a free one)")
    try:
        sock = _bind(host, port)
    except OSError as exc:
        return fail(f"cannot listen on {host}:{port}: {exc.strerror or exc} (is another server using the port? "
                    f"pick another with --port, or --port 0 for any free one)")
    try:
        return _run(sock, model, device, dtype, max_batch, max_wait_ms, api_key, max_image_bytes,
                    max_image_pixels, max_tokens, model_name, log_level, threads)
    finally:
        sock.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _run(sock: socket.socket, model: Path, device: str, dtype: str, max_batch: int, max_wait_ms: float,
         api_key: str | None, max_image_bytes: int, max_image_pixels: int, max_tokens: int, model_name: str | None,
         log_level: str, threads: int) -> int:
    import logging

    import torch

    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        return fail(f"tinyllava serve needs FastAPI and uvicorn ({exc.name} is missing): "
                    f"pip install 'tinyllava\\[serve]'")  # (escaped for rich markup)

    if threads:
        torch.set_num_threads(threads)
    from tinyllava.serving import ServeConfig
    from tinyllava.serving.app import context_length, create_app

    pipeline, problem = load_pipeline(model, device, dtype)
    if problem:
        return fail(problem)
    name = model_name or _default_name(Path(model))
    config = ServeConfig(model_id=name, max_batch=max_batch, max_wait_ms=max_wait_ms, api_key=api_key or None,
                         max_image_bytes=max_image_bytes, max_image_pixels=max_image_pixels,
                         default_max_tokens=max_tokens, context_length=context_length(pipeline))
    app = create_app(pipeline, config)
    logging.getLogger("tinyllava.serve").setLevel(log_level.upper())
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    console.print(f"serving {name} ({pipeline.device}, {str(pipeline.pixel_dtype).removeprefix('torch.')}, "
                  f"{torch.get_num_threads()} threads) at {url}", highlight=False)
    console.print(f"  chat page: {url}/   OpenAI API: {url}/v1   batches of up to {max_batch}, "
                  f"waiting up to {max_wait_ms:g} ms{'   API key required' if api_key else ''}", highlight=False)
    console.print("  Ctrl-C stops the server", highlight=False)
    server = _quiet_signals(uvicorn.Server)(uvicorn.Config(app, log_level=log_level, access_log=False,
                                                           lifespan="on", timeout_graceful_shutdown=5,
                                                           proxy_headers=False))
    server.run(sockets=[sock])
    console.print("server stopped")
    return 0


def _quiet_signals(server_class: type) -> type:
    """uvicorn's Server, but Ctrl-C/SIGTERM end it gracefully without being raised again afterwards (uvicorn
    re-raises the signal, which surfaces as a KeyboardInterrupt traceback from the cancelled lifespan)."""
    import contextlib
    import signal

    class Server(server_class):  # type: ignore[misc, valid-type]
        @contextlib.contextmanager
        def capture_signals(self):  # noqa: ANN202 - uvicorn's signature
            signals = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


def _default_name(model: Path) -> str:
    """The run's name for `runs/NAME/latest` or `runs/NAME/stageN/final`, else the folder's name."""
    path = model.resolve()
    parts = path.parts
    if path.name == "final" and len(parts) >= 3:
        return f"{parts[-3]}/{parts[-2]}"
    return path.name
