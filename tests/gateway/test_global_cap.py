"""A global concurrency cap per expert (`global_max_concurrency`): counted over every replica
(Redis), the next candidate answers when it is reached, else 429 with retry-after; being busy is
not a failure (the breaker stays closed)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from gateway.slots import MemorySlots, RedisSlots
from routers.embedder import Embedder
from tests.gateway.conftest import (
    Gateway,
    expert,
    run_gateway,
    simulator,
    two_replicas,
    write_config,
)
from tests.redis_server import REDIS_URL

MATH = [{"role": "user", "content": "Solve for x: 2x + 3 = 11."}]


def pinned(gw: Gateway) -> httpx.Response:
    body = {"model": "slow", "messages": MATH}
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=30)


@pytest.mark.redis
def test_the_cap_holds_over_two_replicas(
    tmp_path: Path, embedder: Embedder, redis_prefix: str
) -> None:
    with simulator(model="slow-model", ttft_s=1.0, completion_tokens=3) as slow:
        experts = [expert("slow", slow, ["*"], global_max_concurrency=2, max_concurrency=8)]
        url = f"{REDIS_URL}?prefix={redis_prefix}"
        with two_replicas(tmp_path, embedder, experts, url) as (a, b):
            with ThreadPoolExecutor(6) as pool:
                answers = list(pool.map(pinned, [a, b, a, b, a, b]))
            codes = sorted(r.status_code for r in answers)
            assert codes == [200, 200, 429, 429, 429, 429], codes
            busy = next(r for r in answers if r.status_code == 429)
            assert busy.headers["retry-after"] == "1"
            assert busy.json()["error"]["code"] == "expert_busy"
            card = next(
                c for c in httpx.get(f"{a.url}/v1/models").json()["data"] if c["id"] == "slow"
            )
            assert card["coe"]["state"] == "closed"  # busy is not failing
            assert [pinned(gw).status_code for gw in (a, b)] == [200, 200]  # slots came back


def test_a_busy_expert_hands_over_to_the_next_candidate(tmp_path: Path, embedder: Embedder) -> None:
    with (
        simulator(model="slow-model", ttft_s=1.0, completion_tokens=3) as slow,
        simulator(model="spare-model", completion_tokens=3) as spare,
    ):
        experts = [
            expert("slow", slow, ["math"], global_max_concurrency=1),
            expert("spare", spare, ["*"]),
        ]
        config = write_config(tmp_path, experts, router={"fallback": "spare"})
        with run_gateway(config, embedder) as gw:

            def routed(_: int) -> httpx.Response:
                body = {"messages": MATH}
                return httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=30)

            with ThreadPoolExecutor(3) as pool:
                answers = list(pool.map(routed, range(3)))
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert sorted(r.headers["x-coe-expert"] for r in answers) == ["slow", "spare", "spare"]


@pytest.mark.redis
async def test_redis_slots_are_atomic_and_expire(redis_prefix: str) -> None:
    slots = RedisSlots(REDIS_URL, redis_prefix)
    try:
        first = await slots.acquire("x", cap=1, ttl_s=0.2)
        assert first is not None and await slots.acquire("x", cap=1, ttl_s=0.2) is None
        await asyncio.sleep(0.3)  # a replica that died holding it: the lease expires
        again = await slots.acquire("x", cap=1, ttl_s=5)
        assert again is not None
        await slots.release("x", again)
        assert await slots.acquire("x", cap=1, ttl_s=5) is not None
    finally:
        await slots.aclose()
    memory = MemorySlots()
    token = await memory.acquire("y", cap=1, ttl_s=1)
    assert token and await memory.acquire("y", cap=1, ttl_s=1) is None
    await memory.release("y", token)
    assert await memory.acquire("y", cap=1, ttl_s=1) is not None
