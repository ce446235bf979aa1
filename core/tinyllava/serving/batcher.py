"""Dynamic batching: requests queue up; one worker thread takes as many as can share a generate call (up to
`max_batch`) and runs them together, left-padded. A request waits for company at most `max_wait_ms`, and only when
some may come: others are on their way (received, their image and prompt being prepared) or the last batch had
company (concurrent traffic). A lone client's request goes at once.

Greedy requests always share; sampled ones share only with the same temperature and top_p and no seed (a seeded
request runs alone, so its seed alone decides its answer). Each request reads its own tokens as they come and is
finished as soon as its own stop token or token limit is reached; the batch stops early once nobody needs more.
Greedy answers are those the request would get alone: rows do not see each other (padding is masked), and a row's
tokens do not depend on how long the others run.

Threads: the worker owns the model; results go back to the event loop with `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("tinyllava.serve")
SHUTTING_DOWN = "the server is shutting down; try again in a moment"


@dataclass
class Job:
    """One request's generation. `events` receives ("token", id) when `want_tokens`, then ("done", reason) with
    reason "stop" (stop token) or "length", or ("error", message)."""

    rows: list[int]
    pixels: Any                   # (3, H, W) tensor or None
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    want_tokens: bool = False
    loop: Any = None
    events: Any = None            # asyncio.Queue on `loop`
    tokens: list[int] = field(default_factory=list)
    cancelled: bool = False       # the reader needs nothing more (client gone, stop string seen)
    finished: bool = False
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> tuple:
        if self.temperature <= 0:
            return ("greedy",)
        if self.seed is not None:
            return ("seeded", id(self))
        return ("sample", self.temperature, self.top_p)


class Stats:
    """Counters for /metrics; updated by the worker and the routes (single ints: the GIL keeps them whole)."""

    def __init__(self) -> None:
        self.started = time.time()
        self.requests = 0
        self.completed = 0
        self.errors: Counter[int] = Counter()
        self.batches = 0
        self.batch_sizes: Counter[int] = Counter()
        self.batched_requests = 0
        self.generated_tokens = 0
        self.busy_seconds = 0.0

    def as_dict(self, queued: int) -> dict[str, Any]:
        return {
            "uptime_s": round(time.time() - self.started, 3),
            "requests_total": self.requests,
            "completed_total": self.completed,
            "errors_total": dict(sorted((str(k), v) for k, v in self.errors.items())),
            "queued": queued,
            "batches_total": self.batches,
            "batch_size": {
                "histogram": {str(k): v for k, v in sorted(self.batch_sizes.items())},
                "mean": round(self.batched_requests / self.batches, 3) if self.batches else 0.0,
                "max": max(self.batch_sizes, default=0),
            },
            "generated_tokens_total": self.generated_tokens,
            "busy_seconds": round(self.busy_seconds, 3),
        }


class Batcher:
    def __init__(self, pipeline: Any, *, max_batch: int, max_wait_ms: float, stats: Stats | None = None) -> None:
        self.pipeline = pipeline
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self.stats = stats or Stats()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._pending: deque[Job] = deque()
        self._stopping = False
        self._thread: threading.Thread | None = None
        # requests received but not queued yet (body, image, prompt being prepared): worth waiting for
        self.arriving = 0
        self._last_size = 0  # the last batch's size: more than 1 means concurrent traffic, worth waiting for
        self.stop_ids = set(pipeline.template.stop_token_ids(pipeline.tokenizer))

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tinyllava-batcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping = True
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def queued(self) -> int:
        return self._queue.qsize() + len(self._pending)

    # -- the event loop's side ---------------------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        """Queue `job`; call from the event loop (its events arrive on that loop)."""
        job.loop = asyncio.get_running_loop()
        job.events = asyncio.Queue()
        if self._stopping:
            job.events.put_nowait(("error", SHUTTING_DOWN))
            return
        self._queue.put(job)

    # -- the worker --------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                break
            if batch:
                self._generate(batch)
        for job in list(self._pending):
            self._send(job, [("error", SHUTTING_DOWN)])

    def _take(self, block: bool, timeout: float | None = None) -> bool:
        """Move one queued job to `_pending`; False when none came (or the stop signal did)."""
        try:
            job = self._queue.get(block=block, timeout=timeout)
        except queue.Empty:
            return False
        if job is None:
            self._stopping = True
            return False
        self._pending.append(job)
        return True

    def _next_batch(self) -> list[Job] | None:
        if not self._pending and (self._stopping or not self._take(block=True)):
            return None  # stopping, and everything taken has been answered
        while self._take(block=False):
            pass
        first = self._pending[0]
        deadline = first.enqueued + self.max_wait
        while not self._stopping and sum(j.key == first.key for j in self._pending) < self.max_batch:
            left = deadline - time.monotonic()
            if left <= 0 or (self.arriving <= 0 and self._queue.empty() and self._last_size <= 1):
                break  # waited long enough, or a lone client and nobody else on the way: go now
            self._take(block=True, timeout=min(left, 0.002))
        batch: list[Job] = []
        rest: deque[Job] = deque()
        for job in self._pending:
            if job.cancelled:
                self._send(job, [("done", "cancelled")])
            elif job.key == first.key and len(batch) < self.max_batch:
                batch.append(job)
            else:
                rest.append(job)
        self._pending = rest
        self._last_size = len(batch)
        return batch

    def _generate(self, batch: list[Job]) -> None:
        import torch

        from tinyllava.inference.pipeline import GenerationSettings

        first = batch[0]
        started = time.perf_counter()
        self.stats.batches += 1
        self.stats.batch_sizes[len(batch)] += 1
        self.stats.batched_requests += len(batch)
        log.debug("batch of %d (%s), %d queued", len(batch), first.key[0], self.queued())
        settings = GenerationSettings(max_new_tokens=max(j.max_tokens for j in batch),
                                      temperature=first.temperature, top_p=first.top_p, seed=first.seed)
        pipe = self.pipeline
        try:
            images = [j.pixels for j in batch if j.pixels is not None]
            pixels = (torch.stack(images).to(device=pipe.device, dtype=pipe.pixel_dtype) if images else None)

            def on_step(step: int, tokens: list[int]) -> bool:
                updates = []
                for job, token in zip(batch, tokens, strict=True):
                    if job.finished:
                        continue
                    if token in self.stop_ids:
                        job.finished = True
                        updates.append((job, ("done", "stop")))
                        continue
                    job.tokens.append(token)
                    self.stats.generated_tokens += 1
                    if job.want_tokens:
                        updates.append((job, ("token", token)))
                    if len(job.tokens) >= job.max_tokens:
                        job.finished = True
                        updates.append((job, ("done", "length")))
                if updates:
                    _post(first.loop, updates)
                return all(j.finished or j.cancelled for j in batch)

            pipe.generate_ids([j.rows for j in batch], pixels, settings, on_step=on_step)
            leftover = [(j, ("done", "length")) for j in batch if not j.finished]
            for job, _ in leftover:
                job.finished = True
            if leftover:
                _post(first.loop, leftover)
        except Exception as exc:  # noqa: BLE001 - one failed batch must not take the server down
            log.exception("generation failed for a batch of %d", len(batch))
            failed = [(j, ("error", f"generation failed: {type(exc).__name__}: {exc}")) for j in batch
                      if not j.finished]
            for job, _ in failed:
                job.finished = True
            if failed:
                _post(first.loop, failed)
        finally:
            self.stats.busy_seconds += time.perf_counter() - started

    def _send(self, job: Job, events: list[tuple]) -> None:
        job.finished = True
        if job.loop is not None:
            _post(job.loop, [(job, e) for e in events])


def _post(loop: Any, updates: list[tuple[Job, tuple]]) -> None:
    try:
        loop.call_soon_threadsafe(_deliver, updates)
    except RuntimeError:  # the event loop is closed (shutting down): nobody is listening any more
        pass


def _deliver(updates: list[tuple[Job, tuple]]) -> None:
    for job, event in updates:
        job.events.put_nowait(event)
