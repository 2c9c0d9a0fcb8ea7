"""Live cost of output-level fusion on the embedded default, against a one-expert baseline.

REAL MODELS, not the simulator: the gateway is started as `coe serve` would start it with no
config file (a fresh SQLite registry seeded with its two in-process SmolLM2-135M experts,
`smollm2` and `smollm2-tutor`, generating on this machine's CPU). Every strategy (`none`: a
plain routed request with no `coe` extension; `vote`, `consensus`, `judge`, `aggregate`,
`cascade`: `extra_body={"coe": {"fusion": S, "experts": ["smollm2", "smollm2-tutor"]}}`) gets
the same short questions through the official `openai` client, streamed and not, with
`max_tokens` 48 and `temperature` 0, one request at a time. The order is round-robin per
question (strategies rotated per question), so drift of the machine hits every strategy alike.

Recorded per strategy and mode: median and mean wall time (and the ratio of the medians to
`none`), time to the first content chunk for streams (and its ratio), expert calls (the names
in `x-coe-experts`, which also lists a judge or aggregator call), summed `usage.total_tokens`
(ratio to `none`), the `x-coe-fusion` / `x-coe-fusion-reason` headers seen; at the end, the
gateway's `coe_fusion_*` Prometheus series (after the warm-up, and the whole run's delta).

Usage (5-12 minutes on 2 CPUs, 1-2.5 min a question; the model must be prepared once with
`coe models prepare`):

    cd /work/main && PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/fusion/live_cost.py

Writes bench/fusion/results/live_cost.json.
"""

from __future__ import annotations

import argparse
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
import openai
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).resolve().parent
EXPERTS = ["smollm2", "smollm2-tutor"]
STRATEGIES = ["none", "vote", "consensus", "judge", "aggregate", "cascade"]
QUESTIONS = [
    "What is 12 + 7?",
    "What is 9 times 6?",
    "What is the capital of France?",
    "Which planet is known as the Red Planet? A) Venus B) Mars C) Jupiter D) Saturn. "
    "Answer with the letter.",
    "Which gas do plants absorb from the air? A) Oxygen B) Nitrogen C) Carbon dioxide "
    "D) Helium. Answer with the letter.",
]
MAX_TOKENS = 48
TIMEOUT_S = 300.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def gateway(tmp: Path, timeout_s: float = 300) -> Iterator[str]:
    """`coe serve` with no config file and a fresh registry; yields its base URL once ready."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = os.environ | {
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "COE_REGISTRY__URL": f"sqlite:///{tmp / 'registry.db'}",
        "COE_SERVER__LOG_LEVEL": "warning",
    }
    env.pop("COE_CONFIG", None)
    log = (tmp / "gateway.log").open("wb")
    args = [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError((tmp / "gateway.log").read_text()[-4000:])
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}/readyz")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def ask(client: openai.OpenAI, strategy: str, question: str, stream: bool) -> dict[str, Any]:
    """One request; its wall time, first-content time (streams), headers, usage and text."""
    kwargs: dict[str, Any] = {
        "model": "auto",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "timeout": TIMEOUT_S,
    }
    if strategy != "none":
        kwargs["extra_body"] = {"coe": {"fusion": strategy, "experts": EXPERTS}}
    ttft: float | None = None
    total_tokens: int | None = None
    started = time.perf_counter()
    if stream:
        with client.chat.completions.with_streaming_response.create(
            stream=True, stream_options={"include_usage": True}, **kwargs
        ) as response:
            headers = response.headers
            parts: list[str] = []
            for chunk in response.parse():
                if chunk.usage is not None:
                    total_tokens = chunk.usage.total_tokens
                for choice in chunk.choices:
                    if choice.delta.content:
                        if ttft is None:
                            ttft = time.perf_counter() - started
                        parts.append(choice.delta.content)
        text = "".join(parts)
    else:
        raw = client.chat.completions.with_raw_response.create(**kwargs)
        headers = raw.headers
        completion = raw.parse()
        text = completion.choices[0].message.content or ""
        total_tokens = completion.usage.total_tokens if completion.usage else None
    wall = time.perf_counter() - started
    experts = [name for name in headers.get("x-coe-experts", "").split(",") if name]
    return {
        "strategy": strategy,
        "stream": stream,
        "wall_s": wall,
        "ttft_s": ttft,
        "expert": headers.get("x-coe-expert"),
        "experts": experts,
        "calls": len(experts),
        "total_tokens": total_tokens,
        "fusion": headers.get("x-coe-fusion"),
        "fusion_reason": headers.get("x-coe-fusion-reason"),
        "text": text,
    }


def fusion_metrics(url: str) -> dict[str, float]:
    """The gateway's `coe_fusion_*` and `coe_fused_*` samples, keyed `name{labels}`."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith(("coe_fusion_", "coe_fused_")):
                continue
            if sample.name.endswith(("_created", "_bucket")):
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def by_strategy(samples: dict[str, float]) -> dict[str, dict[str, float]]:
    """`{strategy: {added_seconds_sum, added_seconds_count, calls, dropped, fused}}`."""
    short = {
        "coe_fusion_added_seconds_sum": "added_seconds_sum",
        "coe_fusion_added_seconds_count": "added_seconds_count",
        "coe_fusion_calls_total": "calls",
        "coe_fusion_dropped_total": "dropped",
        "coe_fused_requests_total": "fused",
    }
    out: dict[str, dict[str, float]] = {}
    for key, value in samples.items():
        name, _, labels = key.partition("{")
        strategy = labels.rstrip("}").removeprefix("strategy=")
        if name in short:
            out.setdefault(strategy, {})[short[name]] = value
    for row in out.values():
        if row.get("added_seconds_count"):
            row["added_seconds_mean"] = row["added_seconds_sum"] / row["added_seconds_count"]
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per mode and strategy: latency, calls, tokens and headers, with ratios to `none`."""
    summary: dict[str, Any] = {}
    for stream in (False, True):
        mode: dict[str, Any] = {}
        for strategy in STRATEGIES:
            mine = [r for r in rows if r["strategy"] == strategy and r["stream"] is stream]
            walls = [r["wall_s"] for r in mine]
            ttfts = [r["ttft_s"] for r in mine if r["ttft_s"] is not None]
            tokens = [r["total_tokens"] for r in mine if r["total_tokens"] is not None]
            entry: dict[str, Any] = {
                "requests": len(mine),
                "median_s": statistics.median(walls),
                "mean_s": statistics.fmean(walls),
                "calls_total": sum(r["calls"] for r in mine),
                "calls_per_request": statistics.fmean(r["calls"] for r in mine),
                "total_tokens": sum(tokens),
                "requests_with_usage": len(tokens),
                "fusion_seen": sorted({str(r["fusion"]) for r in mine}),
                "fusion_reasons_seen": sorted({str(r["fusion_reason"]) for r in mine}),
                "experts_seen": sorted({",".join(r["experts"]) for r in mine}),
            }
            if stream:
                entry["ttft_median_s"] = statistics.median(ttfts) if ttfts else None
                entry["ttft_mean_s"] = statistics.fmean(ttfts) if ttfts else None
            mode[strategy] = entry
        base = mode["none"]
        for entry in mode.values():
            entry["median_ratio"] = entry["median_s"] / base["median_s"]
            entry["tokens_ratio"] = (
                entry["total_tokens"] / base["total_tokens"] if base["total_tokens"] else None
            )
            entry["calls_ratio"] = entry["calls_per_request"] / base["calls_per_request"]
            if stream and entry["ttft_median_s"] and base["ttft_median_s"]:
                entry["ttft_ratio"] = entry["ttft_median_s"] / base["ttft_median_s"]
        summary["stream" if stream else "non_stream"] = mode
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--questions", type=int, default=len(QUESTIONS))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "live_cost.json")
    args = parser.parse_args()
    questions = QUESTIONS[: args.questions]

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmpdir, gateway(Path(tmpdir)) as url:
        startup_s = time.perf_counter() - started
        print(f"gateway ready at {url} in {startup_s:.1f}s", flush=True)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        warm = ask(client, "vote", QUESTIONS[0], stream=False)  # touches both experts
        print(f"warm-up (vote): {warm['wall_s']:.2f}s", flush=True)
        after_warmup = fusion_metrics(url)
        rows: list[dict[str, Any]] = []
        for qi, question in enumerate(questions):
            order = STRATEGIES[qi % len(STRATEGIES) :] + STRATEGIES[: qi % len(STRATEGIES)]
            for stream in (False, True) if qi % 2 == 0 else (True, False):
                for strategy in order:
                    row = ask(client, strategy, question, stream) | {"question": qi}
                    rows.append(row)
                    ttft = "" if row["ttft_s"] is None else f" ttft={row['ttft_s']:.2f}s"
                    print(
                        f"q{qi} {'stream' if stream else 'whole '} {strategy:<9} "
                        f"{row['wall_s']:6.2f}s{ttft} calls={row['calls']} "
                        f"tokens={row['total_tokens']} fusion={row['fusion']} "
                        f"({row['fusion_reason']}) {row['text'][:40]!r}",
                        flush=True,
                    )
        at_end = fusion_metrics(url)
    run_delta = {k: v - after_warmup.get(k, 0.0) for k, v in at_end.items()}
    report: dict[str, Any] = {
        "benchmark": "live cost of output-level fusion vs one routed expert (real models)",
        "gateway": "embedded default, no config file: smollm2 + smollm2-tutor (SmolLM2-135M, "
        "in-process, CPU); judge and aggregator smollm2, fusion.k 2, deadline_s 120",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "params": {
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "experts": EXPERTS,
            "questions": questions,
            "concurrency": 1,
            "order": "per question: both modes, strategies rotated round-robin",
        },
        "startup_s": startup_s,
        "warmup": warm,
        "wall_total_s": time.perf_counter() - started,
        "summary": summarise(rows),
        "metrics": {
            "by_strategy_run": by_strategy(run_delta),
            "by_strategy_at_end": by_strategy(at_end),
            "samples_at_end": at_end,
            "note": "_run = at end minus after the warm-up (one `vote` request); "
            "added_seconds: latency fusion added over the fastest candidate",
        },
        "requests": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for mode in ("non_stream", "stream"):
        for strategy, entry in report["summary"][mode].items():
            ttft = f" ttft_ratio={entry.get('ttft_ratio', 0):.2f}" if mode == "stream" else ""
            print(
                f"{mode:<10} {strategy:<9} calls/req={entry['calls_per_request']:.2f} "
                f"tokens_ratio={entry['tokens_ratio'] or 0:.2f} median={entry['median_s']:.2f}s "
                f"ratio={entry['median_ratio']:.2f}{ttft} fusion={entry['fusion_seen']}"
            )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
