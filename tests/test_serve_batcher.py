"""The serving batcher on its own (no HTTP): who shares a generate call, that each request gets its solo answer,
and that stopping answers what was queued and ends the worker."""

from __future__ import annotations

import asyncio

import pytest


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    from tinyllava.inference import Pipeline
    from tinyllava.testing import save_and_reload_tiny

    return Pipeline(save_and_reload_tiny(tmp_path_factory.mktemp("ckpt"))[1])


async def _answer(job) -> tuple[str, list[int]]:
    while True:
        kind, value = await job.events.get()
        if kind != "token":
            return value, list(job.tokens)


def test_greedy_requests_share_a_batch_and_a_seeded_one_runs_alone(pipe):
    from tinyllava.inference.pipeline import GenerationSettings
    from tinyllava.serving.batcher import Batcher, Job

    prompts = [pipe.encode_prompts([[{"from": "human", "value": text}]], [None])[0]
               for text in ("Hi", "What shape is the red circle?", "square")]

    async def main():
        batcher = Batcher(pipe, max_batch=8, max_wait_ms=1000)
        batcher.start()
        batcher.arriving = 1  # one more is on its way: the first request waits for company
        jobs = [Job(prompts[0], None, 5), Job(prompts[1], None, 3),
                Job(prompts[2], None, 6, temperature=1.0, seed=7), Job(prompts[2], None, 4)]
        for job in jobs:
            batcher.submit(job)
        await asyncio.sleep(0.05)
        batcher.arriving = 0
        results = [await _answer(job) for job in jobs]
        batcher.stop()
        return batcher, results

    batcher, results = asyncio.run(main())
    assert dict(batcher.stats.batch_sizes) == {3: 1, 1: 1}  # the three greedy ones together, the seeded one alone
    for (reason, tokens), rows, limit in zip([results[i] for i in (0, 1, 3)], [prompts[0], prompts[1], prompts[2]],
                                             (5, 3, 4), strict=True):
        alone = pipe.generate_ids([rows], None, GenerationSettings(max_new_tokens=limit))[0]
        assert tokens == alone and reason == ("length" if len(alone) == limit else "stop")
    seeded = pipe.generate_ids([prompts[2]], None, GenerationSettings(max_new_tokens=6, temperature=1.0, seed=7))[0]
    assert results[2][1] == seeded


def test_stopping_answers_the_queue_then_refuses(pipe):
    from tinyllava.serving.batcher import SHUTTING_DOWN, Batcher, Job

    rows = pipe.encode_prompts([[{"from": "human", "value": "Hi"}]], [None])[0]

    async def main():
        batcher = Batcher(pipe, max_batch=2, max_wait_ms=0)
        batcher.start()
        jobs = [Job(rows, None, 3) for _ in range(5)]
        for job in jobs:
            batcher.submit(job)
        batcher.stop(timeout=60)  # a hang guard: the worker ends as soon as the queue is answered
        alive = batcher._thread.is_alive()
        results = [await _answer(job) for job in jobs]
        late = Job(rows, None, 3)
        batcher.submit(late)
        return alive, results, await late.events.get()

    alive, results, late = asyncio.run(main())
    assert not alive
    assert all(reason in ("stop", "length") for reason, _ in results)
    assert late == ("error", SHUTTING_DOWN)
