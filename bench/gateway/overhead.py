"""Gateway overhead: the same load sent straight to an upstream and through the gateway.

The upstream is the vLLM-API SIMULATOR (experts/simulator.py; synthetic tokens, no model), so the
numbers isolate what the gateway adds: parsing, routing (MiniLM embedding for `auto`), the pool,
the HTTP hop and SSE re-framing. All three targets run in this script's process tree on this
machine, one after another, and are reported as ratios against the direct run:

    direct   client -> simulator
    pinned   client -> gateway (model=<expert>, no routing) -> simulator
    routed   client -> gateway (model=auto: embed + classify) -> simulator

Usage: python bench/gateway/overhead.py [--requests 600] [--concurrency 1 8 32]
Writes bench/gateway/overhead.json and overhead.png.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

HERE = Path(__file__).resolve().parent
RUNS = itertools.count()
QUERIES = [
    "Solve for x: 3x + 4 = 19.",
    "Write a Python function that merges two sorted lists.",
    "Write a haiku about the first snow.",
    "Why is the sky blue?",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


@contextmanager
def process(args: list[str], ready_url: str) -> Iterator[int]:
    """Run `args` until the block ends; ready once `ready_url` answers 200. Yields its pid."""
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(ready_url)
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def load(url: str, model: str, n: int, concurrency: int, stream: bool) -> dict[str, float]:
    run = next(RUNS)
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            nonlocal errors
            while not queue.empty():
                i = queue.get_nowait()
                # unique text, so the router's embedding cache cannot turn this into a cache test
                query = f"{QUERIES[i % len(QUERIES)]} (run {run}, request {i})"
                body = {
                    "model": model,
                    "stream": stream,
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": query}],
                }
                started = time.perf_counter()
                response = await client.post("/v1/chat/completions", json=body)
                await response.aread()
                latencies.append(time.perf_counter() - started)
                errors += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": n,
        "errors": errors,
        "throughput_rps": n / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))],
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--out", type=Path, default=HERE / "overhead.json")
    args = parser.parse_args()

    sim_port, gw_port = free_port(), free_port()
    sim_url, gw_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{gw_port}"
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "coe.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "server": {"log_level": "warning"},
                    "registry": {"url": "memory://"},
                    "router": {
                        "categories": {
                            "math": ["Solve 2x = 8", "What is 7 times 8?", "Integrate x dx"],
                            "code": [
                                "Write a Python function",
                                "Fix my JavaScript bug",
                                "SQL join",
                            ],
                            "writing": ["Write a poem", "Draft an email", "Write a story"],
                        },
                        "fallback": "sim",
                    },
                    "experts": [
                        {
                            "name": "sim",
                            "kind": "vllm",
                            "endpoint": f"{sim_url}/v1",
                            "categories": ["*"],
                            "max_concurrency": 1024,
                        }
                    ],
                }
            )
        )
        python = sys.executable
        with (
            process(
                [
                    python,
                    "-m",
                    "gateway",
                    "simulate",
                    "--port",
                    str(sim_port),
                    "--model",
                    "sim-model",
                    "--ttft-s",
                    "0",
                    "--inter-token-s",
                    "0",
                    "--completion-tokens",
                    "16",
                ],
                f"{sim_url}/health",
            ),
            process(
                [python, "-m", "gateway", "serve", "--config", str(config), "--port", str(gw_port)],
                f"{gw_url}/readyz",
            ),
        ):
            results: list[dict[str, Any]] = []
            for stream in (False, True):
                for concurrency in args.concurrency:
                    row: dict[str, Any] = {"stream": stream, "concurrency": concurrency}
                    for target, url, model in (
                        ("direct", sim_url, "sim-model"),
                        ("pinned", gw_url, "sim"),
                        ("routed", gw_url, "auto"),
                    ):
                        asyncio.run(load(url, model, 20, concurrency, stream))  # warm-up
                        row[target] = asyncio.run(
                            load(url, model, args.requests, concurrency, stream)
                        )
                    for target in ("pinned", "routed"):
                        row[f"{target}_p50_ratio"] = row[target]["p50_ms"] / row["direct"]["p50_ms"]
                        row[f"{target}_throughput_ratio"] = (
                            row[target]["throughput_rps"] / row["direct"]["throughput_rps"]
                        )
                    results.append(row)
                    print(
                        json.dumps(
                            {
                                k: (round(v, 3) if isinstance(v, float) else v)
                                for k, v in row.items()
                                if "ratio" in k or k in ("stream", "concurrency")
                            }
                        ),
                        flush=True,
                    )
    report = {
        "benchmark": "gateway overhead vs direct upstream (vLLM-API simulator upstream)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "requests_per_point": args.requests,
        "note": "load generator, gateway and simulator share the same CPUs",
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out.with_suffix(".png"))


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, stream in zip(axes, (False, True), strict=True):
        rows = [r for r in report["results"] if r["stream"] is stream]
        xs = [r["concurrency"] for r in rows]
        for target in ("direct", "pinned", "routed"):
            ax.plot(xs, [r[target]["p50_ms"] for r in rows], marker="o", label=target)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("p50 latency (ms)")
        ax.set_title("streaming" if stream else "non-streaming")
        ax.legend()
    fig.suptitle("coe-gateway overhead vs direct upstream (simulator upstream, 2 CPUs)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
