"""Faults with the REAL vLLM worker: the worker dying before the first byte (failover, nothing
lost) and in the middle of a stream (an in-stream error, then [DONE], no hang). The worker's
death is a loopback proxy resetting its connections (tests/fault_proxy.py), so the session's
worker keeps serving the other tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from gateway.app import create_app
from gateway.settings import load_settings
from routers.embedder import Embedder
from routers.factory import build_router
from tests.fault_proxy import FaultProxy, fault_proxy
from tests.gateway.conftest import CATEGORIES
from tests.servers import serve_in_thread

pytestmark = pytest.mark.vllm
MATH = [{"role": "user", "content": "What is 17 times 23? Explain step by step."}]


@pytest.fixture
def behind_proxy(
    vllm_server: str, tmp_path: Path, embedder: Embedder
) -> Iterator[tuple[str, FaultProxy]]:
    parts = urlsplit(vllm_server)
    with fault_proxy(parts.hostname or "127.0.0.1", parts.port or 80) as proxy:
        common = {"kind": "vllm", "timeout_s": 120, "model": "smollm2"}
        config = {
            "registry": {"url": "memory://"},
            "health": {"probe_interval_s": 0},
            "router": {"categories": CATEGORIES, "fallback": "direct"},
            "experts": [  # the math expert goes through the proxy; `direct` does not
                {
                    "name": "proxied",
                    "endpoint": f"{proxy.url}/v1",
                    "categories": ["math"],
                    **common,
                },
                {"name": "direct", "endpoint": vllm_server, "categories": ["writing"], **common},
            ],
        }
        path = tmp_path / "coe.yaml"
        path.write_text(yaml.safe_dump(config))
        settings = load_settings(path)
        app = create_app(settings, router=build_router(settings.router, embedder))
        with serve_in_thread(app) as url:
            yield url, proxy


def test_a_worker_dead_before_the_first_byte_fails_over(
    behind_proxy: tuple[str, FaultProxy],
) -> None:
    url, proxy = behind_proxy
    proxy.kill()  # pooled keep-alive connections die with it
    body = {"messages": MATH, "max_tokens": 16}
    answer = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
    assert answer.status_code == 200, answer.text
    assert answer.headers.get("x-coe-failover-from") == "proxied", dict(answer.headers)
    assert answer.headers["x-coe-expert"] == "direct"
    assert answer.json()["choices"][0]["message"]["content"]  # a real answer, nothing lost


def test_a_worker_dying_mid_stream_ends_the_stream_cleanly(
    behind_proxy: tuple[str, FaultProxy],
) -> None:
    url, proxy = behind_proxy
    proxy.cut_after = 900  # headers and a few chunks, then the connection is reset
    body = {"messages": MATH, "max_tokens": 64, "stream": True, "model": "proxied"}
    started = time.monotonic()
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    assert time.monotonic() - started < 60  # no hang
    assert proxy.cuts >= 1
    assert lines[-1] == "data: [DONE]"
    errors = [line for line in lines if line.startswith('data: {"error"')]
    assert len(errors) == 1 and "proxied" in errors[0]
    assert any('"content"' in line for line in lines[:-2])  # tokens came before the cut
