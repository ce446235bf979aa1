"""Serving throughput: answers/s and p50/p95 latency of `tinyllava serve` with 1, 8 and 32 concurrent clients,
batched (`--max-batch 32`) against one request at a time (`--max-batch 1`), on the same requests.

The requests are the `shapes` benchmark's image questions (the image inline as a PNG data URL, the benchmark's
answer length), sent over HTTP to real server processes by asyncio clients in this process (each client sends its
next request when the previous one is answered). Both servers stay up and get the same warm-up; their runs are
interleaved, `--repeat` rounds, and the median run is reported (a busy machine slows both alike). Greedy answers of
the batched server are compared with the one-at-a-time server's: they must be identical. The server's CPU time per
answer is printed too: steadier than wall time when other work shares the machine.

    python benchmarks/serve_throughput.py                               # trains a reduced quickstart first
    python benchmarks/serve_throughput.py --model runs/quickstart/latest  # a real checkpoint

Writes WORK/serve_throughput.json and WORK/serve_throughput.png (answers/s and latency against concurrency).
The clients share the machine with the server: on 2 cores their CPU time counts against the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXE = str(Path(sys.executable).parent / "tinyllava")


def reduced_quickstart(work: Path, steps: int, threads: int) -> Path:
    """The quickstart model trained for `steps` steps a stage (the real one trains 750 + 250): same size, so the
    same serving cost; its answers are less right."""
    out = work / "train"
    latest = out / "quickstart" / "latest"
    if (latest / "tinyllava.json").is_file():
        print(f"reusing {latest}")
        return latest
    sets = ["--set", f"output_dir={out}", "--set", f"num_threads={threads}"]
    for stage in (0, 1):
        sets += ["--set", f"stages.{stage}.max_steps={steps}",
                 "--set", f"stages.{stage}.data.dataset.num_images={max(64, steps * 32)}"]
    print(f"training a reduced quickstart ({steps} steps a stage) into {out} ...", flush=True)
    subprocess.run([EXE, "train", *sets], check=True, stdout=subprocess.DEVNULL)
    return latest


def build_requests(n: int, max_tokens: int | None) -> list[dict[str, Any]]:
    from tinyllava.plugins.registry import get_registry

    bench = get_registry().create("benchmark", "shapes", {"per_category": max(1, n // 5 + 1)})
    items = bench.load_items(None, n)
    bodies = []
    for item in items:
        buf = io.BytesIO()
        item.image.save(buf, "PNG")
        url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        bodies.append({"id": item.item_id, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": item.prompt}]}],
            "max_tokens": max_tokens or item.max_new_tokens})
    return bodies


class Server:
    """`tinyllava serve` in a subprocess on a free port; stopped with SIGINT (Ctrl-C)."""

    def __init__(self, model: Path, max_batch: int, max_wait_ms: float, threads: int, log: Path,
                 extra: list[str]) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        self.log_path = log
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [EXE, "serve", "--model", str(model), "--port", "0", "--max-batch", str(max_batch),
             "--max-wait-ms", str(max_wait_ms), "--log-level", "warning", "--threads", str(threads), *extra],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        while True:
            match = re.search(r"serving (\S+) .*? at (http://\S+)", log.read_text())
            if match:
                self.model_id, self.url = match[1], match[2]
                return
            if self.proc.poll() is not None:
                raise SystemExit(f"the server did not start:\n{log.read_text()}")
            time.sleep(0.2)

    def cpu_seconds(self) -> float:
        """CPU time the server process has used (all its threads): steadier than wall time on a busy machine."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(120)
        self.log.close()


async def load(url: str, model: str, bodies: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    """Send every body with `concurrency` clients; per-request latency and the wall time of the whole run."""
    import httpx

    latencies: list[float] = [0.0] * len(bodies)
    answers: list[str] = [""] * len(bodies)
    next_index = iter(range(len(bodies)))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        async def client() -> None:
            for i in next_index:
                body = {k: v for k, v in bodies[i].items() if k != "id"}
                began = time.perf_counter()
                response = await http.post("/v1/chat/completions", json={"model": model, **body})
                latencies[i] = time.perf_counter() - began
                response.raise_for_status()
                answers[i] = response.json()["choices"][0]["message"]["content"]

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - began
    return {"wall_s": wall, "latencies": latencies, "answers": answers}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def one_run(server: Server, bodies: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    import httpx

    before = httpx.get(f"{server.url}/metrics", timeout=600).json()
    cpu, client_cpu = server.cpu_seconds(), time.process_time()
    run = asyncio.run(load(server.url, server.model_id, bodies, concurrency))
    cpu, client_cpu = server.cpu_seconds() - cpu, time.process_time() - client_cpu
    after = httpx.get(f"{server.url}/metrics", timeout=600).json()
    batches = after["batches_total"] - before["batches_total"]
    lat = run["latencies"]
    return {
        "concurrency": concurrency, "requests": len(bodies), "wall_s": round(run["wall_s"], 3),
        "answers_per_s": round(len(bodies) / run["wall_s"], 2),
        "p50_ms": round(1000 * percentile(lat, 50), 1), "p95_ms": round(1000 * percentile(lat, 95), 1),
        "mean_batch": round(len(bodies) / batches, 2) if batches else None,
        "server_cpu_ms_per_answer": round(1000 * cpu / len(bodies), 1),
        "client_cpu_ms_per_answer": round(1000 * client_cpu / len(bodies), 1),
        "answers": run["answers"],
    }


def measure(args: argparse.Namespace, model: Path, bodies: list[dict[str, Any]], work: Path) -> dict[str, Any]:
    """Both servers stay up; runs are interleaved (sequential, batched, at each concurrency, `--repeat` rounds) so
    that a busy machine slows both alike. Each figure is the run with the median answers/s."""
    modes = {"sequential": 1, "batched": args.max_batch}
    servers: dict[str, Server] = {}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {m: {str(c): [] for c in args.concurrency} for m in modes}
    try:
        for mode, max_batch in modes.items():
            servers[mode] = Server(model, max_batch, args.max_wait_ms, args.threads, work / f"server-{mode}.log",
                                   ["--device", args.device, "--dtype", args.dtype])
            print(f"{mode}: serving at {servers[mode].url} (--max-batch {max_batch})", flush=True)
            asyncio.run(load(servers[mode].url, servers[mode].model_id, bodies[:args.warmup], min(8, args.warmup)))
        for round_ in range(args.repeat):
            for concurrency in args.concurrency:
                for mode, server in servers.items():
                    row = one_run(server, bodies, concurrency)
                    runs[mode][str(concurrency)].append(row)
                    print(f"  round {round_ + 1} {mode:<10} {concurrency:>3} clients: {row['answers_per_s']:7.2f} "
                          f"answers/s  p50 {row['p50_ms']:7.1f} ms  p95 {row['p95_ms']:7.1f} ms  mean batch "
                          f"{row['mean_batch']}  server CPU {row['server_cpu_ms_per_answer']} ms/answer, clients' "
                          f"CPU {row['client_cpu_ms_per_answer']} ms/answer", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    results: dict[str, Any] = {}
    for mode in modes:
        results[mode] = {}
        for c, rows in runs[mode].items():
            ordered = sorted(rows, key=lambda r: r["answers_per_s"])
            results[mode][c] = {**ordered[len(ordered) // 2], "answers_per_s_all": [r["answers_per_s"] for r in rows]}
    return results


def summarise(results: dict[str, Any], concurrency: list[int]) -> dict[str, Any]:
    base = results["sequential"][str(concurrency[0])]
    reference = base["answers"]
    table = []
    for mode in ("sequential", "batched"):
        for c in concurrency:
            row = results[mode][str(c)]
            table.append({"mode": mode, **{k: v for k, v in row.items() if k != "answers"},
                          "vs_sequential": round(row["answers_per_s"] / base["answers_per_s"], 2),
                          "vs_sequential_same_clients": round(
                              row["answers_per_s"] / results["sequential"][str(c)]["answers_per_s"], 2),
                          "cpu_vs_sequential": round(base["server_cpu_ms_per_answer"]
                                                     / max(row["server_cpu_ms_per_answer"], 1e-9), 2),
                          "same_answers": sum(a == b for a, b in zip(row["answers"], reference, strict=True))})
    return {"rows": table, "baseline": f"sequential (--max-batch 1) at concurrency {concurrency[0]}",
            "sample_answers": reference[:5]}


def print_table(summary: dict[str, Any]) -> None:
    header = f"{'mode':<11}{'clients':>8}{'answers/s':>11}{'p50 ms':>9}{'p95 ms':>9}{'mean batch':>12}" \
             f"{'vs seq.':>9}{'vs seq. same clients':>22}{'CPU ms/ans':>12}{'CPU vs seq.':>13}{'same answers':>14}"
    print(header)
    print("-" * len(header))
    for r in summary["rows"]:
        print(f"{r['mode']:<11}{r['concurrency']:>8}{r['answers_per_s']:>11.2f}{r['p50_ms']:>9.1f}"
              f"{r['p95_ms']:>9.1f}{r['mean_batch'] or 0:>12.2f}{r['vs_sequential']:>8.2f}x"
              f"{r['vs_sequential_same_clients']:>21.2f}x"
              f"{r['server_cpu_ms_per_answer']:>12.1f}{r['cpu_vs_sequential']:>12.2f}x"
              f"{r['same_answers']:>9}/{r['requests']}")
    print(f"(vs seq.: answers/s over the {summary['baseline']}; vs seq. same clients: over the one-at-a-time "
          f"server's with as many clients; CPU: the server process's CPU time per answer, and the baseline's over it)")


def plot(summary: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for mode, colour in (("sequential", "#9ca3af"), ("batched", "#2563eb")):
        rows = [r for r in summary["rows"] if r["mode"] == mode]
        xs = [r["concurrency"] for r in rows]
        ax1.plot(xs, [r["answers_per_s"] for r in rows], "o-", color=colour, label=mode)
        ax2.plot(xs, [r["p50_ms"] for r in rows], "o-", color=colour, label=f"{mode} p50")
        ax2.plot(xs, [r["p95_ms"] for r in rows], "o--", color=colour, label=f"{mode} p95")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xticks([r["concurrency"] for r in summary["rows"] if r["mode"] == "batched"])
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("concurrent clients")
        ax.grid(alpha=0.3)
        ax.legend()
    ax1.set_ylabel("answers / s")
    ax1.set_title("throughput")
    ax2.set_ylabel("latency (ms)")
    ax2.set_yscale("log")
    ax2.set_title("latency per request")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None, help="checkpoint (default: train a reduced quickstart)")
    p.add_argument("--train-steps", type=int, default=60, help="steps a stage of the reduced quickstart")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tinyllava-serve-bench")
    p.add_argument("--requests", type=int, default=128, help="requests per concurrency level")
    p.add_argument("--warmup", type=int, default=16)
    p.add_argument("--repeat", type=int, default=3, help="interleaved rounds; the median run is reported")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--max-batch", type=int, default=32, help="the batched server's --max-batch")
    p.add_argument("--max-wait-ms", type=float, default=10.0)
    p.add_argument("--max-tokens", type=int, default=None, help="answer length (default: the benchmark's, 8)")
    p.add_argument("--threads", type=int, default=1,
                   help="the server's torch threads (1 leaves a core to HTTP and image preparation on 2 cores)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--json", type=Path, default=None, help="default: WORK/serve_throughput.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    model = args.model or reduced_quickstart(args.work, args.train_steps, args.threads)
    bodies = build_requests(args.requests, args.max_tokens)
    args.warmup = min(args.warmup, len(bodies))
    results = measure(args, model, bodies, args.work)
    summary = summarise(results, args.concurrency)
    print()
    print_table(summary)
    top = max(args.concurrency)
    best = [r for r in summary["rows"] if r["mode"] == "batched" and r["concurrency"] == top][0]
    ratio = best["vs_sequential"]
    print(f"batched at concurrency {top}: {ratio:.2f}x the one-at-a-time server's answers/s with 1 client, "
          f"{best['vs_sequential_same_clients']:.2f}x with {top} clients (goal: 5x)")
    report = {"model": str(Path(model).resolve()), "requests": len(bodies), "threads": args.threads,
              "device": args.device, "dtype": args.dtype, "max_batch": args.max_batch,
              "max_wait_ms": args.max_wait_ms, "cpus": os.cpu_count(),
              "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
              "speedup_at_max_concurrency": ratio, **summary}
    out = args.json or args.work / "serve_throughput.json"
    out.write_text(json.dumps(report, indent=2))
    picture = out.with_suffix(".png")
    resolved = Path(model).resolve()
    label = "/".join(resolved.parts[-3:-1]) if resolved.name == "final" else resolved.name
    plot(summary, picture, f"tinyllava serve: {label}, {len(bodies)} shapes questions, torch threads "
                           f"{args.threads}, {args.device}, {os.cpu_count()} CPUs")
    print(f"wrote {out} and {picture}")


if __name__ == "__main__":
    main()
