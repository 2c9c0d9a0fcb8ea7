"""The vLLM-API simulator over real HTTP (driven by OpenAIExpert) and in-process."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from experts.chat import ChatDelta, ChatRequest, Message, Sampling, Usage
from experts.errors import ExpertTimeout, ExpertUnavailable, UpstreamError, UpstreamRejected
from experts.openai import OpenAIExpert
from experts.simulator import SimulatedExpert, SimulatorConfig
from experts.simulator_answers import filler
from registry.spec import ExpertKind
from tests.experts.conftest import RunningSimulator, StartSimulator, make_spec, wait_for

PROMPT = "tell me about the moons of jupiter"
REQUEST = ChatRequest(messages=(Message("system", "s"), Message("user", PROMPT)))
SLOW = {"completion_tokens": 10_000, "inter_token_s": 0.005}
"""An answer that would take ~50 s: only ever ended early by the client."""


def over_http(sim: RunningSimulator, http: httpx.AsyncClient, **spec: Any) -> OpenAIExpert:
    fields: dict[str, Any] = {"endpoint": sim.endpoint, "model": "coe-simulator"}
    return OpenAIExpert(make_spec(**(fields | spec)), http)


def expected_text(count: int) -> str:
    return "".join(filler(PROMPT, count))


# -- the HTTP face -------------------------------------------------------------------------


async def test_chat_is_deterministic_and_honours_max_tokens(
    start_simulator: StartSimulator, http: httpx.AsyncClient
) -> None:
    sim = start_simulator(completion_tokens=6)
    expert = over_http(sim, http)

    full = await expert.chat(REQUEST)
    again = await expert.chat(REQUEST)
    cut = await expert.chat(ChatRequest(REQUEST.messages, Sampling(max_tokens=3)))

    assert full.content == again.content == expected_text(6)
    assert set(full.content.split()) <= set(PROMPT.split())
    assert (full.finish_reason, full.model) == ("stop", "coe-simulator")
    assert full.usage == Usage(prompt_tokens=8, completion_tokens=6)
    assert cut.content == expected_text(3)
    assert cut.finish_reason == "length"
    assert sim.stats.requests_received == 3


async def test_every_client_param_reaches_the_server(
    start_simulator: StartSimulator, http: httpx.AsyncClient
) -> None:
    sim = start_simulator()
    expert = over_http(sim, http)
    params = {"temperature": 0.1, "top_p": 0.5, "seed": 7, "stop": ["."], "x_extra": [1, 2]}
    sampling = Sampling(temperature=0.1, top_p=0.5, seed=7, stop=(".",))
    extra = {"x_extra": [1, 2], "stream": True}
    await expert.chat(ChatRequest(REQUEST.messages, sampling, extra=extra))

    body = sim.stats.last_request_body
    assert body is not None
    assert body["model"] == "coe-simulator"
    assert body["stream"] is False
    assert {k: body[k] for k in params} == params


async def test_stream_yields_the_same_text_then_finish_and_usage(
    start_simulator: StartSimulator, http: httpx.AsyncClient
) -> None:
    sim = start_simulator(completion_tokens=5)
    expert = over_http(sim, http)
    request = ChatRequest(
        messages=REQUEST.messages,
        include_usage=True,
        extra={"stream_options": {"include_usage": True}},
    )

    deltas = [delta async for delta in expert.stream(request)]

    assert "".join(d.content for d in deltas) == expected_text(5)
    assert deltas[-2:] == [
        ChatDelta(finish_reason="stop"),
        ChatDelta(usage=Usage(prompt_tokens=8, completion_tokens=5)),
    ]
    assert sim.stats.last_request_body is not None
    assert sim.stats.last_request_body["stream_options"] == {"include_usage": True}
    assert await wait_for(lambda: sim.stats.streams_completed == 1)
    assert sim.stats.streams_cancelled == 0


async def test_an_unknown_model_is_rejected_with_the_upstream_message(
    start_simulator: StartSimulator, http: httpx.AsyncClient
) -> None:
    expert = over_http(start_simulator(), http, model="no-such-model")
    with pytest.raises(UpstreamRejected) as caught:
        await expert.chat(REQUEST)
    assert caught.value.status == 404
    assert "`no-such-model` does not exist" in caught.value.message


@pytest.mark.parametrize(
    ("mode", "kind"), [("status_500", UpstreamError), ("status_503", ExpertUnavailable)]
)
async def test_status_failures(
    start_simulator: StartSimulator, http: httpx.AsyncClient, mode: str, kind: type[Exception]
) -> None:
    expert = over_http(start_simulator(failure_rate=1.0, fail_mode=mode), http)
    with pytest.raises(kind):
        await expert.chat(REQUEST)
    with pytest.raises(kind) as caught:
        async for _ in expert.stream(REQUEST):
            pass
    assert isinstance(caught.value, UpstreamError | ExpertUnavailable)
    assert caught.value.before_first_byte


async def test_a_hanging_server_times_out(
    start_simulator: StartSimulator, http: httpx.AsyncClient
) -> None:
    expert = over_http(start_simulator(failure_rate=1.0, fail_mode="hang"), http, timeout_s=0.3)
    with pytest.raises(ExpertTimeout):
        await expert.chat(REQUEST)


@pytest.mark.parametrize(
    ("mode", "kind"),
    [("disconnect_mid_stream", ExpertUnavailable), ("error_event_mid_stream", UpstreamError)],
)
async def test_mid_stream_failures_come_after_the_first_byte(
    start_simulator: StartSimulator, http: httpx.AsyncClient, mode: str, kind: type[Exception]
) -> None:
    sim = start_simulator(failure_rate=1.0, fail_mode=mode, fail_after_tokens=2)
    expert = over_http(sim, http)
    received: list[ChatDelta] = []
    with pytest.raises(kind) as caught:
        async for delta in expert.stream(REQUEST):
            received.append(delta)
    assert "".join(d.content for d in received) == expected_text(2)
    assert isinstance(caught.value, UpstreamError | ExpertUnavailable)
    assert caught.value.before_first_byte is False
    assert await wait_for(lambda: sim.stats.streams_failed == 1)
    assert sim.stats.streams_cancelled == 0


async def test_failures_follow_the_seeded_rate(
    start_simulator: StartSimulator, http: httpx.AsyncClient
) -> None:
    async def outcomes(sim: RunningSimulator) -> list[bool]:
        expert = over_http(sim, http)
        results = []
        for _ in range(30):
            try:
                await expert.chat(REQUEST)
                results.append(True)
            except UpstreamError:
                results.append(False)
        return results

    first = await outcomes(start_simulator(failure_rate=0.5, seed=11))
    second = await outcomes(start_simulator(failure_rate=0.5, seed=11))
    assert first == second
    assert 0 < first.count(False) < 30


async def test_closing_a_stream_early_is_seen_as_a_cancelled_stream(
    start_simulator: StartSimulator, http: httpx.AsyncClient
) -> None:
    sim = start_simulator(**SLOW)
    deltas = over_http(sim, http).stream(REQUEST)
    assert (await anext(deltas)).content
    await deltas.aclose()

    assert await wait_for(lambda: sim.stats.streams_cancelled == 1)
    assert sim.stats.streams_completed == 0


async def test_cancelling_the_consumer_is_seen_as_a_cancelled_stream(
    start_simulator: StartSimulator, http: httpx.AsyncClient
) -> None:
    sim = start_simulator(**SLOW)
    expert = over_http(sim, http)
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in expert.stream(REQUEST):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_for(lambda: sim.stats.streams_cancelled == 1)


async def test_models_and_health_endpoints(
    start_simulator: StartSimulator, http: httpx.AsyncClient
) -> None:
    sim = start_simulator(model="base", lora_adapters=("sql-lora",))
    assert (await http.get(f"{sim.url}/health")).status_code == 200
    health = await over_http(sim, http).health()
    assert health.healthy
    assert health.models == ("base", "sql-lora")


async def test_a_bad_request_gets_an_openai_error(
    start_simulator: StartSimulator, http: httpx.AsyncClient
) -> None:
    sim = start_simulator()
    response = await http.post(f"{sim.endpoint}/chat/completions", json={"messages": []})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "BadRequestError"


# -- the in-process face -------------------------------------------------------------------


def in_process(**options: Any) -> SimulatedExpert:
    spec = make_spec(kind=ExpertKind.SIMULATOR, endpoint=None, model=None, options=options)
    return SimulatedExpert(spec)


async def test_simulated_expert_answers_like_the_server() -> None:
    expert = in_process(completion_tokens=4)
    result = await expert.chat(REQUEST)
    deltas = [d async for d in expert.stream(REQUEST)]

    assert result.content == expected_text(4)
    assert "".join(d.content for d in deltas) == expected_text(4)
    assert deltas[-1] == ChatDelta(finish_reason="stop", usage=result.usage)
    health = await expert.health()
    assert health.healthy
    assert health.models == ("coe-simulator",)
    assert health.running_requests == 0


@pytest.mark.parametrize(
    ("mode", "kind", "first_byte", "yielded", "chat_kind"),
    [
        ("status_500", UpstreamError, True, 0, UpstreamError),
        ("status_503", ExpertUnavailable, True, 0, ExpertUnavailable),
        ("hang", ExpertTimeout, True, 0, ExpertTimeout),
        ("disconnect_mid_stream", ExpertUnavailable, False, 2, UpstreamError),
        ("error_event_mid_stream", UpstreamError, False, 2, UpstreamError),
    ],
)
async def test_simulated_expert_failures_match_the_http_face(
    mode: str, kind: type[Exception], first_byte: bool, yielded: int, chat_kind: type[Exception]
) -> None:
    spec = make_spec(
        kind=ExpertKind.SIMULATOR,
        endpoint=None,
        timeout_s=0.01,
        options={"failure_rate": 1.0, "fail_mode": mode, "fail_after_tokens": 2},
    )
    expert = SimulatedExpert(spec)
    received: list[ChatDelta] = []
    with pytest.raises(kind) as caught:
        async for delta in expert.stream(REQUEST):
            received.append(delta)
    assert len(received) == yielded
    assert isinstance(caught.value, UpstreamError | ExpertUnavailable | ExpertTimeout)
    assert caught.value.before_first_byte is first_byte
    with pytest.raises(chat_kind) as in_chat:
        await expert.chat(REQUEST)
    assert type(in_chat.value) is chat_kind


def test_simulator_options_are_validated() -> None:
    with pytest.raises(ValueError, match="typo_s"):
        in_process(typo_s=1)
    with pytest.raises(ValueError, match="failure_rate"):
        SimulatorConfig(failure_rate=1.5)
    assert in_process().config.model == "coe-simulator"


async def test_the_official_openai_client_reads_the_simulator(
    start_simulator: StartSimulator,
) -> None:
    openai = pytest.importorskip("openai")
    sim = start_simulator(completion_tokens=4)
    messages = [{"role": "user", "content": PROMPT}]
    async with openai.AsyncOpenAI(base_url=sim.endpoint, api_key="unused") as client:
        completion = await client.chat.completions.create(
            model="coe-simulator", messages=messages, max_tokens=3
        )
        stream = await client.chat.completions.create(
            model="coe-simulator",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces = [chunk async for chunk in stream]
    assert completion.choices[0].message.content == expected_text(3)
    assert completion.choices[0].finish_reason == "length"
    text = "".join(c.choices[0].delta.content or "" for c in pieces if c.choices)
    assert text == expected_text(4)
    assert pieces[-1].usage is not None
    assert pieces[-1].usage.completion_tokens == 4
