"""Per-key limits (gateway/quotas.py): requests and tokens per minute and a spend budget, 429
with retry-after; shared by replicas through Redis; a limit store that is down fails open or
closed as configured and /readyz says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from limits.aio.storage import RedisStorage

from gateway.errors import ServiceUnavailable
from gateway.keys import Grant
from gateway.quotas import MemoryTotals, Quotas
from routers.embedder import Embedder
from tests.gateway.conftest import Gateway, Sim, expert, run_gateway, two_replicas, write_config
from tests.gateway.test_keys import MATH, assert_error, chat, create
from tests.redis_server import REDIS_URL


def usage(gw: Gateway, name: str) -> dict[str, Any]:
    response = httpx.get(f"{gw.url}/admin/keys/{name}/usage", headers=gw.admin_headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_requests_per_minute(gateway: Gateway) -> None:
    key = create(gateway, "two-a-minute", rpm=2)
    assert [chat(gateway, key, MATH).status_code for _ in range(2)] == [200, 200]
    third = chat(gateway, key, MATH)
    assert_error(third, 429, "rate_limit_error", "made its 2 requests per minute")
    assert 1 <= int(third.headers["retry-after"]) <= 60
    other = create(gateway, "unlimited")
    assert chat(gateway, other, MATH).status_code == 200  # limits are per key
    assert usage(gateway, "two-a-minute")["minute"]["rpm"] == {"limit": 2, "remaining": 0}


def test_tokens_per_minute_count_streams_too(gateway: Gateway) -> None:
    key = create(gateway, "few-tokens", tpm=10)
    streamed = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"messages": MATH, "stream": True},
        headers={"authorization": f"Bearer {key}"},
    )
    assert streamed.status_code == 200
    assert '"usage":{' not in streamed.text  # the client did not ask for the usage chunk
    totals = usage(gateway, "few-tokens")["totals"]
    assert totals["requests"] == 1 and totals["tokens"] > 10  # counted from the upstream's usage
    over = chat(gateway, key, MATH)
    assert_error(over, 429, "rate_limit_error", "used its 10 tokens per minute")
    assert "retry-after" in over.headers


def test_budget_in_the_experts_cost_unit(
    tmp_path: Path, sims: dict[str, Sim], embedder: Embedder
) -> None:
    experts = [expert("generalist", sims["general"], ["*"], cost=1.0)]
    with run_gateway(write_config(tmp_path, experts), embedder) as gw:
        key = create(gw, "budgeted", budget=1.5)
        assert [chat(gw, key, MATH).status_code for _ in range(2)] == [200, 200]
        spent = chat(gw, key, MATH)
        assert_error(spent, 429, "insufficient_quota", "spent its budget (2 of 1.5)")
        assert spent.json()["error"]["code"] == "budget_exceeded"
        assert usage(gw, "budgeted")["budget"] == {"budget": 1.5, "spent": 2.0}


@pytest.mark.redis
def test_replicas_share_limits_through_redis(
    tmp_path: Path, sims: dict[str, Sim], embedder: Embedder, redis_prefix: str
) -> None:
    experts = [expert("generalist", sims["general"], ["*"])]
    with two_replicas(tmp_path, embedder, experts, f"{REDIS_URL}?prefix={redis_prefix}") as (a, b):
        key = create(a, "shared-limit", rpm=3)
        codes = [chat(gw, key, MATH).status_code for gw in (a, b, a, b)]
        assert codes == [200, 200, 200, 429]
        ready = httpx.get(f"{b.url}/readyz").json()["limits"]
        assert ready == {
            "store": "redis",
            "reachable": True,
            "on_store_failure": "open",
            "refusing": False,
        }
        assert usage(b, "shared-limit")["totals"]["requests"] == 3


def _down(on_failure: Any) -> Quotas:
    storage = RedisStorage(
        "async+redis://127.0.0.1:1/0",
        implementation="redispy",
        wrap_exceptions=True,
        socket_connect_timeout=0.2,
    )
    return Quotas(storage, MemoryTotals(), on_failure, shared=True)


async def test_a_limit_store_that_is_down_fails_open_or_closed() -> None:
    grant = Grant("k", key_id="key_0123456789abcdef", rpm=5)
    await _down("open").admit(grant)  # admitted, logged
    with pytest.raises(ServiceUnavailable, match="limit store is unreachable"):
        await _down("closed").admit(grant)
    await _down("closed").admit(Grant("no-limits"))  # nothing to check: no store call


def test_readyz_says_when_a_down_limit_store_refuses(gateway: Gateway) -> None:
    state = gateway.app.state.coe
    state.quotas = _down("closed")
    response = httpx.get(f"{gateway.url}/readyz")
    assert response.status_code == 503
    assert response.json()["limits"]["refusing"] is True
    state.quotas = _down("open")
    response = httpx.get(f"{gateway.url}/readyz")
    assert response.status_code == 200
    assert response.json()["limits"] == {
        "store": "redis",
        "reachable": False,
        "on_store_failure": "open",
        "refusing": False,
    }
