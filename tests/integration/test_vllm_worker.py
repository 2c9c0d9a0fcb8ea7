"""VllmExpert against a real vLLM CPU server (SmolLM2-135M-Instruct; see conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest

from experts.base import ExpertHealth
from experts.errors import ExpertUnavailable
from experts.vllm import VllmExpert
from registry.spec import ExpertKind, ExpertSpec
from tests.fakes import ask

pytestmark = pytest.mark.vllm

CAPITAL = "What is the capital of France? Answer in one sentence."
STORY = "Write a long story about a dragon who learns to bake bread."
POLL_LIMIT = 120  # bounded polls (0.25 s apart) while waiting for the server's load to change


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def expert(url: str, http: httpx.AsyncClient, model: str | None = None) -> VllmExpert:
    spec = ExpertSpec(name="vllm-0", kind=ExpertKind.VLLM, endpoint=url, model=model)
    return VllmExpert(spec, http)


async def wait_for_load(worker: VllmExpert, *, running: bool) -> ExpertHealth:
    """Poll health until some request runs (running=True) or none does."""
    health = await worker.health()
    for _ in range(POLL_LIMIT):
        busy = (health.running_requests or 0) + (health.waiting_requests or 0) > 0
        if busy == running:
            break
        await asyncio.sleep(0.25)
        health = await worker.health()
    return health


async def test_discovers_the_served_models(vllm_server: str, http: httpx.AsyncClient) -> None:
    default = expert(vllm_server, http)
    assert await default.model_name() == "smollm2"
    alias = expert(vllm_server, http, model="smollm2-b")
    await alias.start()
    assert await alias.model_name() == "smollm2-b"
    with pytest.raises(ExpertUnavailable, match="smollm2-b"):
        await expert(vllm_server, http, model="not-served").start()


async def test_chat_answers_sensibly(vllm_server: str, http: httpx.AsyncClient) -> None:
    result = await expert(vllm_server, http).chat(ask(CAPITAL, max_tokens=24, temperature=0))
    assert "Paris" in result.text
    assert result.finish_reason == "stop"
    assert result.usage is not None
    assert result.usage.prompt_tokens > 10
    assert 1 <= result.usage.completion_tokens <= 24


async def test_two_served_names_answer_alike(vllm_server: str, http: httpx.AsyncClient) -> None:
    request = ask(CAPITAL, max_tokens=16, temperature=0)
    a = await expert(vllm_server, http, model="smollm2").chat(request)
    b = await expert(vllm_server, http, model="smollm2-b").chat(request)
    assert a.content == b.content


async def test_max_tokens_ends_with_length(vllm_server: str, http: httpx.AsyncClient) -> None:
    result = await expert(vllm_server, http).chat(ask(STORY, max_tokens=6, temperature=0))
    assert result.finish_reason == "length"
    assert result.usage is not None
    assert result.usage.completion_tokens == 6


async def test_stream_yields_deltas_then_finish(vllm_server: str, http: httpx.AsyncClient) -> None:
    request = replace(
        ask(CAPITAL, max_tokens=24, temperature=0),
        include_usage=True,
        extra={"stream_options": {"include_usage": True}},
    )
    deltas = [d async for d in expert(vllm_server, http).stream(request)]
    text = "".join(d.content for d in deltas)
    assert sum(1 for d in deltas if d.content) >= 3
    assert "Paris" in text
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    usage = [d.usage for d in deltas if d.usage is not None]
    assert usage and usage[-1].completion_tokens >= 3


async def test_health_reports_metrics_load(vllm_server: str, http: httpx.AsyncClient) -> None:
    worker = expert(vllm_server, http)
    await worker.start()
    idle = await wait_for_load(worker, running=False)
    assert idle.healthy
    assert idle.running_requests == 0.0
    assert idle.waiting_requests == 0.0
    assert set(idle.models) == {"smollm2", "smollm2-b"}
    busy_task = asyncio.create_task(worker.chat(ask(STORY, max_tokens=200, temperature=0)))
    try:
        busy = await wait_for_load(worker, running=True)
        assert (busy.running_requests or 0) + (busy.waiting_requests or 0) >= 1
    finally:
        busy_task.cancel()
        await asyncio.gather(busy_task, return_exceptions=True)


async def test_closing_a_stream_aborts_the_request(
    vllm_server: str, http: httpx.AsyncClient
) -> None:
    worker = expert(vllm_server, http)
    stream = worker.stream(ask(STORY, max_tokens=400, temperature=0))
    first = await anext(stream)
    assert first is not None
    await stream.aclose()
    after = await wait_for_load(worker, running=False)
    assert after.running_requests == 0.0
