"""VllmExpert: model discovery and /health + /metrics, against the simulator and fakes."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from experts.chat import ChatRequest, Message
from experts.errors import ExpertUnavailable
from experts.vllm import VllmExpert, parse_vllm_load
from registry.spec import ExpertKind
from tests.experts.conftest import RunningSimulator, StartSimulator, make_spec, wait_for

REQUEST = ChatRequest(messages=(Message("user", "hi"),))


def vllm(endpoint: str, http: httpx.AsyncClient, **spec: Any) -> VllmExpert:
    fields: dict[str, Any] = {"kind": ExpertKind.VLLM, "endpoint": endpoint, "model": None}
    return VllmExpert(make_spec(**(fields | spec)), http)


def served(http: httpx.AsyncClient, sim: RunningSimulator, **spec: Any) -> VllmExpert:
    return vllm(sim.endpoint, http, **spec)


async def test_start_picks_the_first_served_model(
    start_simulator: StartSimulator, http: httpx.AsyncClient
) -> None:
    sim = start_simulator(model="base-7b", lora_adapters=("sql-lora",))
    expert = served(http, sim)
    await expert.start()
    await expert.start()  # idempotent
    result = await expert.chat(REQUEST)
    assert result.model == "base-7b"
    assert sim.stats.last_request_body is not None
    assert sim.stats.last_request_body["model"] == "base-7b"


async def test_chat_discovers_the_model_when_start_was_not_called(
    start_simulator: StartSimulator, http: httpx.AsyncClient
) -> None:
    sim = start_simulator(model="base-7b")
    deltas = [d async for d in served(http, sim).stream(REQUEST)]
    assert deltas[-1].finish_reason == "stop"
    assert sim.stats.last_request_body is not None
    assert sim.stats.last_request_body["model"] == "base-7b"


async def test_a_served_lora_adapter_can_be_the_model(
    start_simulator: StartSimulator, http: httpx.AsyncClient
) -> None:
    sim = start_simulator(model="base-7b", lora_adapters=("sql-lora",))
    result = await served(http, sim, model="sql-lora").chat(REQUEST)
    assert result.model == "sql-lora"


async def test_a_model_that_is_not_served_is_unavailable(
    start_simulator: StartSimulator, http: httpx.AsyncClient
) -> None:
    sim = start_simulator(model="base-7b", lora_adapters=("sql-lora",))
    expert = served(http, sim, model="math-lora")
    with pytest.raises(ExpertUnavailable, match=r"'math-lora' is not served.*base-7b, sql-lora"):
        await expert.start()
    with pytest.raises(ExpertUnavailable):
        await expert.chat(REQUEST)
    assert sim.stats.requests_received == 0


async def test_an_unreachable_worker_is_unavailable_at_start(http: httpx.AsyncClient) -> None:
    expert = vllm("http://127.0.0.1:9/v1", http, connect_timeout_s=1.0)
    with pytest.raises(ExpertUnavailable):
        await expert.start()
    health = await expert.health()
    assert not health.healthy


async def test_health_reads_the_load_from_metrics(
    start_simulator: StartSimulator, http: httpx.AsyncClient
) -> None:
    sim = start_simulator(completion_tokens=10_000, inter_token_s=0.005)
    expert = served(http, sim)
    await expert.start()

    idle = await expert.health()
    assert idle.healthy
    assert idle.models == ("coe-simulator",)
    assert (idle.running_requests, idle.waiting_requests) == (0.0, 0.0)

    deltas = expert.stream(REQUEST)
    await anext(deltas)
    busy = await expert.health()
    await deltas.aclose()
    assert busy.running_requests == 1.0
    assert await wait_for(lambda: sim.stats.streams_cancelled == 1)


async def test_requests_beyond_max_num_seqs_wait(
    start_simulator: StartSimulator, http: httpx.AsyncClient
) -> None:
    sim = start_simulator(completion_tokens=10_000, inter_token_s=0.005, max_num_seqs=1)
    expert = served(http, sim)
    first, second = expert.stream(REQUEST), expert.stream(REQUEST)
    await anext(first)
    pending = asyncio.ensure_future(anext(second))  # its tokens wait for the one seat
    health = await expert.health()
    for _ in range(1000):  # bounded wait until the simulator has seen the second request
        if health.waiting_requests:
            break
        await asyncio.sleep(0.01)
        health = await expert.health()
    await first.aclose()
    assert (await pending).content  # the seat is free: the second stream starts
    await second.aclose()
    assert (health.running_requests, health.waiting_requests) == (1.0, 1.0)


METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="base"} 3.0
vllm:num_requests_running{engine="0",model_name="sql-lora"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="base"} 4.0
vllm:num_requests_waiting{engine="0",model_name="sql-lora"} 1.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="base"} 0.5
"""


def test_parse_vllm_load_sums_over_label_sets() -> None:
    assert parse_vllm_load(METRICS) == (5.0, 5.0)
    assert parse_vllm_load("# nothing here\n") == (None, None)


def fake_worker(health: int, metrics: httpx.Response | None) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(health)
        if request.url.path == "/metrics" and metrics is not None:
            return metrics
        raise httpx.ConnectError("refused", request=request)

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("health", "metrics", "expected"),
    [
        (200, httpx.Response(200, text=METRICS), (True, 5.0, 5.0)),
        (200, None, (True, None, None)),
        (200, httpx.Response(404), (True, None, None)),
        (200, httpx.Response(200, text="not{prometheus text"), (True, None, None)),
        (503, httpx.Response(200, text=METRICS), (False, None, None)),
    ],
)
async def test_health_with_a_fake_worker(
    health: int, metrics: httpx.Response | None, expected: tuple[bool, Any, Any]
) -> None:
    async with fake_worker(health, metrics) as client:
        result = await vllm("http://worker:8000/v1", client).health()
    assert (result.healthy, result.running_requests, result.waiting_requests) == expected
