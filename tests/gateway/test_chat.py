"""The official `openai` client against the gateway: routed and pinned, stream and non-stream."""

from __future__ import annotations

import httpx
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.gateway.conftest import Gateway, Sim


def test_routed_non_stream_goes_to_the_category_expert(
    gateway: Gateway, sims: dict[str, Sim]
) -> None:
    client = gateway.client()
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Solve for y: 5y - 4 = 21."}]
    )
    completion = raw.parse()
    assert raw.headers["x-coe-expert"] == "math-expert"
    assert raw.headers["x-coe-category"] == "math"
    assert float(raw.headers["x-coe-route-ms"]) > 0
    assert completion.model == "math-expert"
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens == 6
    assert sims["math"].stats.requests_received == 1
    assert sims["code"].stats.requests_received == 0


def test_routed_stream_goes_to_another_category(gateway: Gateway, sims: dict[str, Sim]) -> None:
    client = gateway.client()
    with client.chat.completions.with_streaming_response.create(
        model="auto",
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Write a Go function that parses JSON."}],
    ) as response:
        assert response.headers["x-coe-expert"] == "code-expert"
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert text.strip()
    assert finishes == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    assert sims["code"].stats.streams_completed == 1


def test_model_omitted_means_auto(gateway: Gateway) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "Write a haiku about winter."}]},
    )
    assert response.status_code == 200
    assert response.headers["x-coe-category"] == "writing"
    # no writing expert registered: the generalist ('*') serves it
    assert response.headers["x-coe-expert"] == "generalist"


@pytest.mark.parametrize("stream", [False, True])
def test_pinned_model_skips_routing(gateway: Gateway, sims: dict[str, Sim], stream: bool) -> None:
    client = gateway.client()
    # a math query, pinned elsewhere
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Solve 2 + 2."}]
    if stream:
        chunks = list(
            client.chat.completions.create(model="code-expert", messages=messages, stream=True)
        )
        assert {c.model for c in chunks} == {"code-expert"}
    else:
        completion = client.chat.completions.create(model="code-expert", messages=messages)
        assert completion.model == "code-expert"
    assert sims["code"].stats.requests_received == 1
    assert sims["math"].stats.requests_received == 0


def test_openai_params_and_unknown_fields_pass_through(
    gateway: Gateway, sims: dict[str, Sim]
) -> None:
    gateway.client().chat.completions.create(
        model="math-expert",
        messages=[{"role": "user", "content": "hi"}],
        temperature=0.3,
        max_tokens=4,
        stop=["\n"],
        seed=7,
        extra_body={"top_k": 20, "repetition_penalty": 1.1},
    )
    body = sims["math"].stats.last_request_body
    assert body is not None
    assert body["temperature"] == 0.3 and body["max_tokens"] == 4 and body["stop"] == ["\n"]
    assert body["seed"] == 7 and body["top_k"] == 20 and body["repetition_penalty"] == 1.1
    assert body["model"] == "math-model"  # discovered from the worker's /v1/models
    assert body["stream"] is False


def test_models_lists_auto_and_enabled_experts(gateway: Gateway) -> None:
    ids = [m.id for m in gateway.client().models.list()]
    assert ids == ["auto", "code-expert", "generalist", "math-expert"]


def test_metrics_count_requests_per_expert_and_category(gateway: Gateway) -> None:
    gateway.client().chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "What is 12 squared?"}]
    )
    text = httpx.get(f"{gateway.url}/metrics").text
    assert (
        'coe_requests_total{category="math",expert="math-expert",status="200",stream="false"} 1.0'
        in text
    )
    assert "coe_route_seconds_count" in text
    assert "coe_time_to_first_token_seconds" in text


def test_health_and_readiness(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready" and ready.json()["experts"] == 3
