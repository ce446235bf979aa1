"""MM-Vet: the submission file, the judge protocol against a canned local server, aggregation, errors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from tinyllava_plugin_mmvet.judge import JUDGE_PROMPT, RETRY_SUFFIX, grading_message, parse_score
from tinyllava_plugin_mmvet.mmvet import JudgeNotConfiguredError, MMVetBenchmark

from tinyllava.components.benchmark import DataLayoutError
from tinyllava.testing.conformance import ComponentConformance


class FakeJudge:
    """A chat-completions server on 127.0.0.1 that replies from per-prediction queues of canned texts."""

    def __init__(self) -> None:
        self.replies: dict[str, list[Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                judge.requests.append(body)
                judge.headers.append(dict(self.headers))
                content = body["messages"][0]["content"]
                prediction = content.removesuffix(RETRY_SUFFIX).rsplit(" | ", 2)[-2]
                reply = judge.replies[prediction].pop(0)
                if isinstance(reply, int):  # an HTTP status to fail with
                    self.send_response(reply)
                    self.end_headers()
                    return
                data = json.dumps(
                    {
                        "model": "fake-judge-0613",
                        "choices": [{"message": {"role": "assistant", "content": reply}}],
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.timeout = 5
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FakeJudge:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def fake_judge() -> Iterator[FakeJudge]:
    with FakeJudge() as judge:
        yield judge


@pytest.fixture
def mmvet_dir(tmp_path: Path) -> Path:
    root = tmp_path / "mm-vet"
    (root / "images").mkdir(parents=True)
    meta = {
        "v1_0": {
            "imagename": "v1_0.png",
            "capability": ["rec", "ocr"],
            "question": "What is written?",
            "answer": "stop<OR>halt",
        },
        "v1_1": {"imagename": "v1_1.png", "capability": ["ocr"], "question": "What number?", "answer": "7"},
        "v1_2": {
            "imagename": "v1_2.png",
            "capability": ["rec", "know"],
            "question": "Who is it?",
            "answer": "a<AND>b",
        },
    }
    (root / "mm-vet.json").write_text(json.dumps(meta))
    for sample in meta.values():
        (root / "images" / sample["imagename"]).touch()
    return root


ANSWERS = {"v1_0": "It says STOP.", "v1_1": "seven", "v1_2": "nobody"}


def _bench(url: str, **extra: Any) -> MMVetBenchmark:
    return MMVetBenchmark(
        {"judge_url": url, "api_key_env": "MMVET_TEST_KEY", "rate_limit_wait_s": 0, "timeout_s": 5, **extra}
    )


def test_message_and_parse() -> None:
    msg = grading_message("Q?", "a<AND>b<OR>c", "pred")
    assert msg == JUDGE_PROMPT + "\nQ? | a <AND> b <OR> c | pred | "
    assert JUDGE_PROMPT.endswith("| 1.0\n") and JUDGE_PROMPT.startswith("Compare the ground truth")
    assert parse_score("1.0") == 1.0
    assert parse_score("0.5\n") == 0.5  # first token "0.5\n", stripped
    assert parse_score("0.3 because") == 0.3
    assert parse_score("1.0.") is None  # not a float
    assert parse_score(" 1.0") is None  # split(" ")[0] is ""
    assert parse_score("1.5") is None and parse_score("-0.1") is None
    assert parse_score(None) is None


def test_load_items_and_submission(mmvet_dir: Path, tmp_path: Path) -> None:
    bench = MMVetBenchmark()
    items = bench.load_items(mmvet_dir)
    assert [it.item_id for it in items] == ["v1_0", "v1_1", "v1_2"]
    assert items[0].prompt == "What is written?" and items[0].max_new_tokens == 1024
    assert items[1].image == mmvet_dir.resolve() / "images" / "v1_1.png"
    files = bench.write_answers(items, {"v1_0": "STOP", "v1_2": "x"}, tmp_path)
    assert json.loads((tmp_path / "mmvet_submission.json").read_text()) == {"v1_0": "STOP", "v1_2": "x"}
    first = json.loads(files[0].read_text().splitlines()[0])
    assert first["question_id"] == 0 and first["text"] == "STOP"
    # LLaVA's eval root (holding mm-vet/) is accepted as --data too
    assert [it.item_id for it in bench.load_items(mmvet_dir.parent)] == ["v1_0", "v1_1", "v1_2"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataLayoutError, match="mm-vet.json") as err:
        bench.load_items(tmp_path / "empty")
    assert "eval root holding mm-vet/" in str(err.value)
    (mmvet_dir / "images" / "v1_2.png").unlink()
    with pytest.raises(DataLayoutError, match="1 of 3 images are missing"):
        bench.load_items(mmvet_dir)


def test_without_judge_score_explains_and_submission_is_written(
    mmvet_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = MMVetBenchmark()
    items = bench.load_items(mmvet_dir)
    bench.write_answers(items, ANSWERS, tmp_path)
    assert (tmp_path / "mmvet_submission.json").is_file()
    with pytest.raises(JudgeNotConfiguredError) as err:
        bench.score(items, ANSWERS, tmp_path)
    assert "judge_url" in str(err.value) and "api_key_env" in str(err.value)
    monkeypatch.delenv("MMVET_TEST_KEY", raising=False)
    with pytest.raises(JudgeNotConfiguredError, match="MMVET_TEST_KEY is not set"):
        _bench("http://127.0.0.1:9/v1").score(items, ANSWERS, tmp_path)


def test_judge_protocol_and_aggregation(
    fake_judge: FakeJudge, mmvet_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MMVET_TEST_KEY", "test-key")
    fake_judge.replies = {
        "It says STOP.": ["1.0"],
        "seven": ["I think", "0.5\n"],  # first reply unparsable -> one retry
        "nobody": ["bad"] * 6,  # 5 failed readings -> 0.0, the 6th reply is never read
    }
    bench = _bench(fake_judge.url)
    items = bench.load_items(mmvet_dir)
    result = bench.score(items, ANSWERS, tmp_path)
    m = result.metrics
    # scores 1.0 (rec, ocr), 0.5 (ocr), 0.0 (rec, know)
    assert m["cap/rec"] == pytest.approx(50.0)  # (1.0 + 0.0) / 2
    assert m["cap/ocr"] == pytest.approx(75.0)  # (1.0 + 0.5) / 2
    assert m["cap/know"] == pytest.approx(0.0)
    assert m["total"] == pytest.approx(50.0)  # 1.5 / 3
    assert m["std"] == 0.0 and m["combo/rec_ocr"] == pytest.approx(100.0)
    assert list(m)[0] == "total"
    # the protocol on the wire
    assert len(fake_judge.requests) == 1 + 2 + 6
    first = fake_judge.requests[0]
    assert first["model"] == "gpt-4-0613" and first["max_tokens"] == 3 and first["temperature"] == 0.0
    assert (
        first["messages"][0]["content"]
        == JUDGE_PROMPT + "\nWhat is written? | stop <OR> halt | It says STOP. | "
    )
    assert fake_judge.headers[0]["Authorization"] == "Bearer test-key"
    retry = fake_judge.requests[2]
    assert (
        retry["messages"][0]["content"].endswith(" | seven | " + RETRY_SUFFIX) and retry["temperature"] == 0.0
    )
    assert [r["temperature"] for r in fake_judge.requests[3:]] == [0.0, 0.0, 0.5, 1.0, 1.5, 2.0]
    grades = json.loads((tmp_path / "mmvet_grades.json").read_text())
    assert grades["v1_1"]["score"] == [0.5] and grades["v1_1"]["model"] == ["fake-judge-0613"]
    # a rerun with the same predictions reuses the grades: no new request
    before = len(fake_judge.requests)
    assert bench.score(items, ANSWERS, tmp_path).metrics["total"] == pytest.approx(50.0)
    assert len(fake_judge.requests) == before


def test_two_runs_rate_limit_and_errors(
    fake_judge: FakeJudge, mmvet_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MMVET_TEST_KEY", "k")
    fake_judge.replies = {
        "It says STOP.": [429, "1.0", "0.8"],  # a rate limit, then run 0 and run 1
        "seven": ["0.5", "0.5"],
        "nobody": ["0.0", "0.2"],
    }
    bench = _bench(fake_judge.url, num_runs=2)
    items = bench.load_items(mmvet_dir)
    m = bench.score(items, ANSWERS, tmp_path / "two").metrics
    # run 0: (1.0 + 0.5 + 0.0) / 3 = 50; run 1: (0.8 + 0.5 + 0.2) / 3 = 50 -> mean 50, std 0
    assert m["run/0/total"] == pytest.approx(50.0) and m["run/1/total"] == pytest.approx(50.0)
    # rec: run 0 (1.0 + 0.0)/2 = 50, run 1 (0.8 + 0.2)/2 = 50; ocr: 75 and 65 -> 70
    assert m["cap/ocr"] == pytest.approx(70.0) and m["total"] == pytest.approx(50.0)
    fake_judge.replies = {"It says STOP.": [401]}
    with pytest.raises(RuntimeError, match="HTTP 401"):
        bench.score(items[:1], ANSWERS, tmp_path / "err")
    with pytest.raises(ValueError, match="no answer"):
        bench.score(items, {"v1_0": "x"}, tmp_path / "err")


def test_registered_through_entry_points() -> None:
    from tinyllava.plugins.registry import get_registry, reset_registry

    reset_registry()
    try:
        bench = get_registry().create("benchmark", "mmvet", {"judge_model": "gpt-4o", "num_runs": 5})
        assert isinstance(bench, MMVetBenchmark) and bench.options.num_runs == 5
        with pytest.raises(Exception, match="judge_modle"):
            get_registry().create("benchmark", "mmvet", {"judge_modle": "x"})
    finally:
        reset_registry()


class TestMMVetConformance(ComponentConformance):
    """The shared contract checks: entry points, an import-light entry module, strict options."""

    kind: ClassVar[str] = "benchmark"
    name: ClassVar[str] = "mmvet"
    options: ClassVar[dict[str, Any]] = {"judge_url": "http://127.0.0.1:9/v1", "num_runs": 2}
