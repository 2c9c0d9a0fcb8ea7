"""Many concurrent streaming clients through one gateway process (issue 11, load).

The upstream is the vLLM-API SIMULATOR (synthetic tokens, a labelled load tool, no model), in its
own process; the gateway is `coe serve` in another (memory registry, one pinned expert allowed
256 requests at once: the other streams wait for a slot in the gateway). Each level is first
run straight against the simulator (`direct`, the baseline), then through the gateway: N
clients open a stream each *at the same time* and read it to `[DONE]`; a stream counts as

    completed   every token and [DONE]
    errored     an in-stream `{"error": ...}` event, then [DONE] (a clean failure)
    refused     an HTTP error status before the stream (clean too)
    hung        no [DONE] within `--timeout-s` (a bug)

The gateway's resident memory is sampled every 20 ms (`/proc/<pid>/status` VmRSS) during each
level: its peak, minus the idle RSS before the level, is the memory the streams cost. After each
level `/metrics` must show nothing in flight.

Usage: python -m bench.gateway.streams [--levels 10 100 1000] [--out bench/gateway/streams.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.gateway.overhead import free_port, process

HERE = Path(__file__).resolve().parent
TOKENS = 16
REFUSALS: list[tuple[int, bytes]] = []
"""Status and body start of each refused stream, for a report."""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class PeakRss:
    """Samples a process's RSS in a thread while the block runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            self._stop.wait(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


async def one_stream(client: httpx.AsyncClient, model: str, i: int, timeout_s: float) -> str:
    body = {
        "model": model,
        "stream": True,
        "max_tokens": TOKENS,
        "messages": [{"role": "user", "content": f"stream {i}"}],
    }
    try:
        async with asyncio.timeout(timeout_s):
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    REFUSALS.append((response.status_code, (await response.aread())[:200]))
                    return "refused"
                errored = False
                async for line in response.aiter_lines():
                    if line.startswith('data: {"error"'):
                        errored = True
                    if line == "data: [DONE]":
                        return "errored" if errored else "completed"
                return "hung"  # the connection ended without [DONE]
    except TimeoutError:
        return "hung"


def inflight(gateway_url: str) -> float:
    text = httpx.get(f"{gateway_url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("coe_inflight_requests{")
    )


async def level(url: str, model: str, clients: int, timeout_s: float) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=0)
    timeout = httpx.Timeout(timeout_s, pool=timeout_s)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        started = time.perf_counter()
        streams = (one_stream(client, model, i, timeout_s) for i in range(clients))
        outcomes = await asyncio.gather(*streams)
        wall = time.perf_counter() - started
    counts = {k: outcomes.count(k) for k in ("completed", "errored", "refused", "hung")}
    return {"clients": clients, **counts, "wall_s": round(wall, 2)}


def run(levels: list[int], timeout_s: float = 120.0) -> list[dict[str, Any]]:
    """Every level against one simulator and one gateway process; one row per level."""
    sim_port, gw_port = free_port(), free_port()
    sim_url, gw_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{gw_port}"
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "coe.yaml"
        config.write_text(yaml.safe_dump(_config(sim_url)))
        simulator = [python, "-m", "gateway", "simulate", "--port", str(sim_port)]
        simulator += ["--model", "sim-model", "--ttft-s", "0.05", "--inter-token-s", "0.02"]
        simulator += ["--completion-tokens", str(TOKENS)]
        gateway = [python, "-m", "gateway", "serve", "--config", str(config)]
        gateway += ["--port", str(gw_port)]
        with process(simulator, f"{sim_url}/health"), process(gateway, f"{gw_url}/readyz") as pid:
            # `direct`: the same clients straight to the simulator, the baseline of each level
            rows = []
            for clients in levels:
                direct = asyncio.run(level(sim_url, "sim-model", clients, timeout_s))
                idle = rss_kib(pid)
                with PeakRss(pid) as rss:
                    row = asyncio.run(level(gw_url, "sim", clients, timeout_s))
                time.sleep(0.5)  # let the last closes land
                row |= {
                    "idle_rss_mib": round(idle / 1024, 1),
                    "peak_rss_mib": round(rss.peak / 1024, 1),
                    "added_mib": round((rss.peak - idle) / 1024, 1),
                    "inflight_after": inflight(gw_url),
                    "direct": direct,
                    "wall_ratio": round(row["wall_s"] / max(direct["wall_s"], 1e-9), 2),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
            return rows


def _config(sim_url: str) -> dict[str, Any]:
    return {
        "server": {"log_level": "warning"},
        "registry": {"url": "memory://"},
        "health": {"probe_interval_s": 0},
        "router": {"categories": {"any": ["anything"]}, "fallback": "sim"},
        "experts": [
            {
                "name": "sim",
                "kind": "vllm",
                "endpoint": f"{sim_url}/v1",
                "categories": ["*"],
                "max_concurrency": 256,
                "timeout_s": 120,
                "connect_timeout_s": 60,
            }
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--timeout-s", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=HERE / "streams.json")
    args = parser.parse_args()
    rows = run(args.levels, args.timeout_s)
    result = {
        "what": "concurrent streaming clients through one gateway process (simulator upstream)",
        "machine": {"cpus": 2, "python": platform.python_version()},
        "tokens_per_stream": TOKENS,
        "levels": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
