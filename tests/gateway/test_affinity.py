"""Affinity: tool results go back to the expert that issued the calls; a named conversation
stays on its expert; both shared by replicas through Redis and expiring."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from experts.chat import ChatRequest, Message
from gateway.affinity import (
    AffinityStore,
    MemoryAffinity,
    RedisAffinity,
    conversation_hash,
    tool_result_ids,
)
from routers.embedder import Embedder
from tests.gateway.conftest import Gateway, Sim, expert, run_gateway, two_replicas, write_config
from tests.redis_server import REDIS_URL

CHAT = "/v1/chat/completions"
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
WRITING = "Write a short poem about the sea."


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[], AffinityStore]]:
    """Opens stores on one backend: two Redis stores share the keys (two replicas)."""
    opened: list[AffinityStore] = []
    memory = MemoryAffinity(max_entries=3)
    prefix = None
    if request.param == "redis":
        prefix = request.getfixturevalue("redis_prefix")

    def make() -> AffinityStore:
        one: AffinityStore = memory if prefix is None else RedisAffinity(REDIS_URL, prefix)
        opened.append(one)
        return one

    yield make
    for one in opened:
        await one.aclose()


async def test_store_remembers_expires_and_is_shared(store: Callable[[], AffinityStore]) -> None:
    a, b = store(), store()
    await a.open()
    await b.open()
    assert await a.recall("tool:x") is None
    await a.remember("tool:x", "coder", ttl_s=1.0)
    assert await b.recall("tool:x") == "coder"  # the other replica sees it
    await a.remember("tool:x", "writer", ttl_s=1.0)
    assert await b.recall("tool:x") == "writer"
    await asyncio.sleep(1.3)
    assert await b.recall("tool:x") is None


async def test_memory_store_keeps_the_newest_entries() -> None:
    memory = MemoryAffinity(max_entries=2)
    for key in ("a", "b", "c"):
        await memory.remember(key, key.upper(), ttl_s=60)
    assert [await memory.recall(k) for k in ("a", "b", "c")] == [None, "B", "C"]


async def test_an_unreachable_redis_is_not_fatal() -> None:
    down = RedisAffinity("redis://127.0.0.1:1/0", timeout_s=0.2)
    await down.open()
    await down.remember("tool:x", "coder", ttl_s=60)
    assert await down.recall("tool:x") is None
    await down.aclose()


def test_tool_results_and_conversation_identity() -> None:
    first = (Message("system", "Be brief."), Message("user", "Plan my trip."))
    later = (
        *first,
        Message("assistant", None, {"tool_calls": [{"id": "c1"}]}),
        Message("tool", "sunny", {"tool_call_id": "c1"}),
        Message("tool", "18 C", {"tool_call_id": "c2"}),
    )
    assert tool_result_ids(ChatRequest(later)) == ["c2", "c1"]
    assert tool_result_ids(ChatRequest(first)) == []
    assert conversation_hash(ChatRequest(first)) == conversation_hash(ChatRequest(later))
    other_user = ChatRequest(first, extra={"user": "u2"})
    assert conversation_hash(other_user) != conversation_hash(ChatRequest(first))


def _add_writer(gw: Gateway, sim: Sim) -> None:
    response = httpx.post(
        f"{gw.url}/admin/experts",
        json=expert("writer", sim, ["writing"]),
        headers=gw.admin_headers,
    )
    assert response.status_code == 201, response.text


def _chat(gw: Gateway, messages: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", {})
    response = httpx.post(
        f"{gw.url}{CHAT}", json={"messages": messages, **extra}, headers=headers, timeout=30
    )
    assert response.status_code == 200, response.text
    return response


def test_tool_results_go_back_to_the_expert_that_issued_the_calls(
    gateway: Gateway, sims: dict[str, Sim]
) -> None:
    ask = [{"role": "user", "content": WRITING}]
    first = _chat(gateway, ask, tools=TOOLS)
    assert first.headers["x-coe-expert"] == "generalist"  # no writing expert yet
    message = first.json()["choices"][0]["message"]
    call = message["tool_calls"][0]
    _add_writer(gateway, sims["code"])  # the router now prefers `writer` for this query
    assert _chat(gateway, ask).headers["x-coe-expert"] == "writer"
    follow_up = [*ask, message, {"role": "tool", "tool_call_id": call["id"], "content": "waves"}]
    answered = _chat(gateway, follow_up, tools=TOOLS)
    assert answered.headers["x-coe-expert"] == "generalist"
    assert answered.headers["x-coe-affinity"] == "tool-call"
    # an issuing expert out of rotation: routed as usual
    disable = httpx.patch(
        f"{gateway.url}/admin/experts/generalist",
        json={"enabled": False},
        headers=gateway.admin_headers,
    )
    assert disable.status_code == 200
    rerouted = _chat(gateway, follow_up, tools=TOOLS)
    assert rerouted.headers["x-coe-expert"] == "writer" and "x-coe-affinity" not in rerouted.headers


def test_a_streamed_tool_call_is_remembered_too(gateway: Gateway, sims: dict[str, Sim]) -> None:
    ask = [{"role": "user", "content": WRITING}]
    with httpx.stream(
        "POST", f"{gateway.url}{CHAT}", json={"messages": ask, "tools": TOOLS, "stream": True}
    ) as response:
        assert response.headers["x-coe-expert"] == "generalist"
        body = "".join(response.iter_text())
    found = re.search(r'"id":"(call_[^"]+)"', body)
    assert found is not None
    call_id = found.group(1)
    _add_writer(gateway, sims["code"])
    follow_up = [*ask, {"role": "tool", "tool_call_id": call_id, "content": "waves"}]
    assert _chat(gateway, follow_up, tools=TOOLS).headers["x-coe-expert"] == "generalist"


def test_a_named_conversation_stays_on_its_expert(gateway: Gateway, sims: dict[str, Sim]) -> None:
    named = {"x-coe-conversation": "trip-42"}
    first = _chat(gateway, [{"role": "user", "content": WRITING}], headers=named)
    assert first.headers["x-coe-expert"] == "generalist"
    _add_writer(gateway, sims["code"])
    again = _chat(gateway, [{"role": "user", "content": WRITING}], headers=named)
    assert again.headers["x-coe-expert"] == "generalist"
    assert again.headers["x-coe-affinity"] == "conversation"
    unnamed = _chat(gateway, [{"role": "user", "content": WRITING}])
    assert unnamed.headers["x-coe-expert"] == "writer"  # conversations: off by default


def test_conversations_without_a_header_when_enabled(
    tmp_path: Path, sims: dict[str, Sim], embedder: Embedder
) -> None:
    experts = [expert("generalist", sims["general"], ["*"])]
    config = write_config(tmp_path, experts, affinity={"conversations": True})
    with run_gateway(config, embedder) as gw:
        turn = [{"role": "user", "content": WRITING}]
        first = _chat(gw, turn)
        _add_writer(gw, sims["code"])
        second = [*turn, first.json()["choices"][0]["message"], {"role": "user", "content": "More"}]
        assert _chat(gw, second).headers["x-coe-affinity"] == "conversation"
        other = [{"role": "user", "content": "Write a short poem about hills."}]
        assert _chat(gw, other).headers["x-coe-expert"] == "writer"


@pytest.mark.redis
def test_replicas_share_tool_call_affinity_through_redis(
    tmp_path: Path, sims: dict[str, Sim], embedder: Embedder, redis_prefix: str
) -> None:
    experts = [expert("generalist", sims["general"], ["*"])]
    with two_replicas(tmp_path, embedder, experts, f"{REDIS_URL}?prefix={redis_prefix}") as (a, b):
        ask = [{"role": "user", "content": WRITING}]
        message = _chat(a, ask, tools=TOOLS).json()["choices"][0]["message"]
        _add_writer(a, sims["code"])
        result = {"role": "tool", "tool_call_id": message["tool_calls"][0]["id"], "content": "x"}
        answered = _chat(b, [*ask, message, result], tools=TOOLS)
        assert answered.headers["x-coe-expert"] == "generalist"
        assert answered.headers["x-coe-affinity"] == "tool-call"
