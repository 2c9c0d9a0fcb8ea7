"""Proxy overhead side by side: our gateway's pinned path vs the LiteLLM proxy, same upstream.

The upstream is our vLLM-API SIMULATOR (experts/simulator.py; synthetic tokens, no model) with
the settings of bench/gateway/overhead.py (ttft 0, inter-token 0, 16 completion tokens), so the
numbers isolate what a proxy adds. For each concurrency level, one after another, with a
warm-up before each measured target:

    direct   client -> simulator
    pinned   client -> our gateway (model=sim, no routing) -> simulator
    litellm  client -> LiteLLM proxy (one model_list entry, openai/<sim model>) -> simulator

Same queries, request body (non-streaming, max_tokens 16), request count and concurrency levels
as overhead.py, reported as ratios against the direct run of the same script, plus ours/litellm.
Each proxy's CPU seconds over its measured runs and its RSS after the run are recorded too.

Runs with OUR venv; LiteLLM comes from its own venv, made by bench/peers/litellm_setup.sh:

    bash bench/peers/litellm_setup.sh && .venv/bin/python bench/peers/litellm_overhead.py

Writes bench/peers/results/litellm_overhead.json and litellm_overhead.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

HERE = Path(__file__).resolve().parent
if str(HERE.parents[1]) not in sys.path:  # run as a script: make the repo root importable
    sys.path.insert(0, str(HERE.parents[1]))

from bench.gateway.overhead import free_port, load, wait_ready  # noqa: E402

DEFAULT_VENV = Path.home() / ".cache" / "coe-gateway" / "litellm-venv"
SIM_MODEL = "sim-model"
# the simulator exactly as bench/gateway/overhead.py starts it
SIM_ARGS = ["--ttft-s", "0", "--inter-token-s", "0", "--completion-tokens", "16"]
TARGETS = ("direct", "pinned", "litellm")


@contextmanager
def process(
    args: list[str], ready_url: str, env: dict[str, str], cwd: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """overhead.process, but yields the Popen (for its pid) and keeps stderr in a log file.

    Copied rather than imported because overhead.process hides the process and its output."""
    with log.open("wb") as sink:
        proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while True:  # overhead.wait_ready, in short steps, stopping if the process died
                if proc.poll() is not None:
                    raise RuntimeError(f"{args[0]} exited with {proc.returncode}")
                try:
                    wait_ready(ready_url, timeout_s=2)
                    break
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise
            yield proc
        except BaseException:
            print_tail(log)
            raise
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def print_tail(log: Path, lines: int = 30, stream: IO[str] = sys.stderr) -> None:
    if log.exists():
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        print(f"--- last lines of {log.name}:", *tail, sep="\n", file=stream)


def usage(pid: int) -> tuple[int, float]:
    """(RSS bytes, CPU seconds) of a process and its children: psutil, else /proc (pid only)."""
    try:
        import psutil  # type: ignore[import-untyped]  # a transitive dependency, untyped
    except ImportError:
        status = Path(f"/proc/{pid}/status").read_text()
        rss_kb = next(int(line.split()[1]) for line in status.splitlines() if "VmRSS" in line)
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return 1024 * rss_kb, (int(stat[11]) + int(stat[12])) / ticks
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    rss = sum(int(p.memory_info().rss) for p in procs)
    cpu = sum(float(p.cpu_times().user) + float(p.cpu_times().system) for p in procs)
    return rss, cpu


def check_answer(url: str, model: str) -> str:
    """One request, to make sure the target really answers with the simulator's text."""
    body = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    response.raise_for_status()
    text = str(response.json()["choices"][0]["message"]["content"])
    if not text:
        raise RuntimeError(f"{url}: empty completion")
    return text


def gateway_config(sim_url: str) -> dict[str, Any]:
    """The gateway config of bench/gateway/overhead.py (its router is loaded but not used)."""
    return {
        "server": {"log_level": "warning"},
        "registry": {"url": "memory://"},
        "router": {
            "categories": {
                "math": ["Solve 2x = 8", "What is 7 times 8?", "Integrate x dx"],
                "code": ["Write a Python function", "Fix my JavaScript bug", "SQL join"],
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


def litellm_config(sim_url: str) -> dict[str, Any]:
    """One deployment, no DB, no master key, no callbacks, no cache: LiteLLM's defaults else."""
    return {
        "model_list": [
            {
                "model_name": "sim",
                "litellm_params": {
                    "model": f"openai/{SIM_MODEL}",
                    "api_base": f"{sim_url}/v1",
                    "api_key": "unused",
                },
            }
        ],
        "litellm_settings": {"telemetry": False},
    }


def litellm_env(base: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k not in ("DATABASE_URL", "REDIS_HOST", "REDIS_URL")}
    return env | {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # do not fetch the model cost map
        "LITELLM_LOG": "WARNING",  # also uvicorn's log level: no access log
        "LITELLM_TELEMETRY": "False",
        "LITELLM_MODE": "PRODUCTION",  # no .env loading
        "DISABLE_ADMIN_UI": "True",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "NUM_WORKERS": "1",
        # LiteLLM refuses to start without a master key unless told; our gateway's chat path has
        # no auth either, so both proxies run without per-request auth (bound to 127.0.0.1)
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
    }


def measure_point(
    concurrency: int,
    requests: int,
    targets: dict[str, tuple[str, str, int | None]],
) -> dict[str, Any]:
    row: dict[str, Any] = {"concurrency": concurrency}
    for target, (url, model, pid) in targets.items():
        asyncio.run(load(url, model, 20, concurrency, False))  # warm-up
        cpu_before = usage(pid)[1] if pid else 0.0
        row[target] = asyncio.run(load(url, model, requests, concurrency, False))
        if pid:
            row[target]["proxy_cpu_ms_per_request"] = 1000 * (usage(pid)[1] - cpu_before) / requests
    direct = row["direct"]
    for target in ("pinned", "litellm"):
        row[f"{target}_p50_ratio"] = row[target]["p50_ms"] / direct["p50_ms"]
        row[f"{target}_p95_ratio"] = row[target]["p95_ms"] / direct["p95_ms"]
        row[f"{target}_throughput_ratio"] = row[target]["throughput_rps"] / direct["throughput_rps"]
    ours, peer = row["pinned"], row["litellm"]
    row["ours_over_litellm"] = {
        "p50": ours["p50_ms"] / peer["p50_ms"],
        "p95": ours["p95_ms"] / peer["p95_ms"],
        "throughput": ours["throughput_rps"] / peer["throughput_rps"],
        "cpu_ms_per_request": ours["proxy_cpu_ms_per_request"] / peer["proxy_cpu_ms_per_request"],
    }
    return row


def summary(row: dict[str, Any]) -> str:
    parts = [f"c={row['concurrency']:>2}"]
    for target in TARGETS:
        r = row[target]
        parts.append(
            f"{target} p50 {r['p50_ms']:.2f} p95 {r['p95_ms']:.2f} ms "
            f"{r['throughput_rps']:.0f} rps err {r['errors']}"
        )
    return " | ".join(parts)


def main() -> None:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--venv", type=Path, default=Path(os.environ.get("COE_LITELLM_VENV", DEFAULT_VENV))
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "litellm_overhead.json")
    args = parser.parse_args()

    litellm_bin = args.venv / "bin" / "litellm"
    if not litellm_bin.exists():
        sys.exit(f"{litellm_bin} not found: run bash bench/peers/litellm_setup.sh first")
    litellm_version = subprocess.run(
        [str(args.venv / "bin" / "python"), "-c", "import importlib.metadata as m;"
         "print(m.version('litellm'))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip

    load_before = os.getloadavg()
    sim_port, gw_port, ll_port = free_port(), free_port(), free_port()
    sim_url, gw_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{gw_port}"
    ll_url = f"http://127.0.0.1:{ll_port}"
    ours_env = os.environ | {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        (tmp / "coe.yaml").write_text(yaml.safe_dump(gateway_config(sim_url)))
        (tmp / "litellm.yaml").write_text(yaml.safe_dump(litellm_config(sim_url)))
        simulator = [python, "-m", "gateway", "simulate", "--port", str(sim_port)]
        gateway = [python, "-m", "gateway", "serve", "--config", str(tmp / "coe.yaml")]
        litellm = [str(litellm_bin), "--config", str(tmp / "litellm.yaml")]
        litellm += ["--host", "127.0.0.1", "--port", str(ll_port), "--num_workers", "1"]
        started = time.monotonic()
        with (
            process(
                [*simulator, "--model", SIM_MODEL, *SIM_ARGS],
                f"{sim_url}/health",
                ours_env,
                Path.cwd(),
                tmp / "simulator.log",
            ),
            process(
                [*gateway, "--port", str(gw_port)],
                f"{gw_url}/readyz",
                ours_env,
                Path.cwd(),
                tmp / "gateway.log",
            ) as gw_proc,
            process(
                litellm,
                f"{ll_url}/health/liveliness",
                litellm_env(dict(os.environ)),
                tmp,
                tmp / "litellm.log",
            ) as ll_proc,
        ):
            startup_s = time.monotonic() - started
            targets: dict[str, tuple[str, str, int | None]] = {
                "direct": (sim_url, SIM_MODEL, None),
                "pinned": (gw_url, "sim", gw_proc.pid),
                "litellm": (ll_url, "sim", ll_proc.pid),
            }
            answers = {t: check_answer(url, model) for t, (url, model, _) in targets.items()}
            print(f"all three answer (started in {startup_s:.0f} s): {answers['litellm']!r}")
            results = []
            for concurrency in args.concurrency:
                row = measure_point(concurrency, args.requests, targets)
                results.append(row)
                print(summary(row), flush=True)
            rss = {"pinned": usage(gw_proc.pid)[0], "litellm": usage(ll_proc.pid)[0]}
            print_tail(tmp / "litellm.log", lines=10, stream=sys.stdout)
    load_after = os.getloadavg()

    report = {
        "benchmark": "proxy overhead: coe-gateway pinned vs LiteLLM proxy, same simulator upstream",
        "command": "bash bench/peers/litellm_setup.sh && "
        ".venv/bin/python bench/peers/litellm_overhead.py",
        "litellm_version": litellm_version,
        "coe_gateway_version": version("coe-gateway"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
        },
        "upstream": {"simulator": SIM_ARGS, "model": SIM_MODEL},
        "requests_per_point": args.requests,
        "warmup_requests_per_target": 20,
        "stream": False,
        "rss_mib_after_run": {k: round(v / 2**20, 1) for k, v in rss.items()},
        "notes": [
            "load generator, both proxies and the simulator share the same CPUs",
            "targets measured one after another per concurrency: direct, pinned, litellm",
            "proxy_cpu_ms_per_request: CPU seconds of the proxy process tree over the measured "
            "run / requests",
            "our gateway's RSS includes its router's MiniLM embedding model (loaded, unused here)",
            "LiteLLM: 1 uvicorn worker, no DB, no master key, no callbacks, otherwise defaults",
        ],
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out.with_suffix(".png"))
    print(f"wrote {args.out}")


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]
    xs = [r["concurrency"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for target in TARGETS:
        label = {"pinned": "coe-gateway (pinned)", "litellm": "LiteLLM proxy"}.get(target, target)
        axes[0].plot(xs, [r[target]["p50_ms"] for r in rows], marker="o", label=label)
        axes[1].plot(xs, [r[target]["throughput_rps"] for r in rows], marker="o", label=label)
    for ax, ylabel in zip(axes, ("p50 latency (ms)", "throughput (req/s)"), strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(ylabel)
        ax.legend()
    fig.suptitle(
        f"proxy overhead, non-streaming, simulator upstream "
        f"(LiteLLM {report['litellm_version']}, {report['machine']['cpus']} shared CPUs)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
