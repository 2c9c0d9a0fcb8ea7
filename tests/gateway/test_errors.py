"""Bad input and failures: OpenAI-shaped errors, the right status, failover, in-stream errors."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from experts.chat import ROUTING_QUERY_CHARS, ChatRequest, Message
from routers.embedder import Embedder
from tests.gateway.conftest import Gateway, Sim, expert, run_gateway, simulator, write_config

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Compute 6 times 7."}]


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str)
    return error


def test_malformed_json_is_400(gateway: Gateway) -> None:
    response = httpx.post(
        f"{gateway.url}{CHAT}",
        content=b'{"messages": [',
        headers={"content-type": "application/json"},
    )
    assert _error(response, 400)["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "auto"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
        ({"messages": MESSAGES, "temperature": 5}, "temperature"),
        ({"messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
        ({"messages": MESSAGES, "max_completion_tokens": -1}, "max_completion_tokens"),
        ({"messages": MESSAGES, "top_p": 1.5}, "top_p"),
        ({"messages": MESSAGES, "n": 3}, "n"),
    ],
)
def test_schema_errors_are_400_naming_the_field(gateway: Gateway, body: Any, param: str) -> None:
    error = _error(httpx.post(f"{gateway.url}{CHAT}", json=body), 400)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_unknown_model_is_404(gateway: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        gateway.client().chat.completions.create(model="gpt-9", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.code == "model_not_found"


def test_body_over_limit_is_413(gateway: Gateway) -> None:
    limit = gateway.settings.server.max_body_bytes
    huge = [{"role": "user", "content": "x" * (limit + 10)}]
    assert _error(httpx.post(f"{gateway.url}{CHAT}", json={"messages": huge}), 413)
    # also without a content-length header (chunked upload)
    chunks = iter([b'{"messages": [{"role": "user", "content": "', b"y" * (limit + 10), b'"}]}'])
    assert _error(httpx.post(f"{gateway.url}{CHAT}", content=chunks), 413)


def test_unknown_path_and_method_are_openai_shaped(gateway: Gateway) -> None:
    assert _error(httpx.get(f"{gateway.url}/v1/nothing"), 404)
    assert _error(httpx.get(f"{gateway.url}{CHAT}"), 405)


def _gateway(tmp_path: Path, embedder: Embedder, experts: list[dict[str, Any]], **kw: Any) -> Any:
    return run_gateway(write_config(tmp_path, experts, **kw), embedder)


def test_no_expert_at_all_is_503(tmp_path: Path, embedder: Embedder) -> None:
    with _gateway(tmp_path, embedder, []) as gw:
        error = _error(httpx.post(f"{gw.url}{CHAT}", json={"messages": MESSAGES}), 503)
        assert error["code"] == "no_healthy_expert"


def test_upstream_error_is_502_after_failover(tmp_path: Path, embedder: Embedder) -> None:
    with simulator(failure_rate=1.0, fail_mode="status_500") as bad:
        experts = [expert("bad-math", bad, ["math"]), expert("generalist", bad, ["*"])]
        with _gateway(tmp_path, embedder, experts) as gw:
            error = _error(httpx.post(f"{gw.url}{CHAT}", json={"messages": MESSAGES}), 502)
            assert error["code"] == "upstream_error"
            assert bad.stats.requests_received == 2  # first choice, then failover once


def test_upstream_timeout_is_504(tmp_path: Path, embedder: Embedder) -> None:
    with simulator(failure_rate=1.0, fail_mode="hang") as hang:
        experts = [expert("slow", hang, ["*"], timeout_s=0.5)]
        with _gateway(tmp_path, embedder, experts, upstream={"failover": 0}) as gw:
            error = _error(httpx.post(f"{gw.url}{CHAT}", json={"messages": MESSAGES}), 504)
            assert error["code"] == "upstream_timeout"


def test_unreachable_upstream_fails_over_to_next_best(
    tmp_path: Path, embedder: Embedder, sims: dict[str, Sim]
) -> None:
    experts = [
        {
            "name": "dead-math",
            "kind": "openai",
            "model": "m",
            "endpoint": "http://127.0.0.1:9/v1",
            "categories": ["math"],
            "connect_timeout_s": 1,
        },
        expert("generalist", sims["general"], ["*"]),
    ]
    with _gateway(tmp_path, embedder, experts) as gw:
        for stream in (False, True):
            response = httpx.post(f"{gw.url}{CHAT}", json={"messages": MESSAGES, "stream": stream})
            assert response.status_code == 200
            assert response.headers["x-coe-expert"] == "generalist"
            assert response.headers["x-coe-failover-from"] == "dead-math"
        metrics = httpx.get(f"{gw.url}/metrics").text
        assert 'coe_fallbacks_total{reason="expert_failed"} 2.0' in metrics


def test_all_candidates_unreachable_is_503(tmp_path: Path, embedder: Embedder) -> None:
    dead = {
        "kind": "openai",
        "model": "m",
        "endpoint": "http://127.0.0.1:9/v1",
        "connect_timeout_s": 1,
    }
    experts = [
        {"name": "dead-a", "categories": ["math"], **dead},
        {"name": "dead-b", "categories": ["*"], **dead},
    ]
    with _gateway(tmp_path, embedder, experts) as gw:
        error = _error(httpx.post(f"{gw.url}{CHAT}", json={"messages": MESSAGES}), 503)
        assert error["code"] == "expert_unavailable"


def test_error_after_first_byte_goes_into_the_stream(tmp_path: Path, embedder: Embedder) -> None:
    with (
        simulator(
            failure_rate=1.0,
            fail_mode="error_event_mid_stream",
            fail_after_tokens=2,
            completion_tokens=10,
        ) as flaky,
        _gateway(tmp_path, embedder, [expert("flaky", flaky, ["*"])]) as gw,
    ):
        response = httpx.post(f"{gw.url}{CHAT}", json={"messages": MESSAGES, "stream": True})
        assert response.status_code == 200  # headers were sent before the failure
        events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        error = json.loads(events[-2])["error"]
        assert error["type"] == "upstream_error"
        contents = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[:-2]]
        assert any(contents)  # the first tokens did arrive


def test_openai_client_raises_on_in_stream_error(tmp_path: Path, embedder: Embedder) -> None:
    with (
        simulator(
            failure_rate=1.0,
            fail_mode="disconnect_mid_stream",
            fail_after_tokens=1,
            completion_tokens=10,
        ) as flaky,
        _gateway(tmp_path, embedder, [expert("flaky", flaky, ["*"])]) as gw,
    ):
        stream = gw.client().chat.completions.create(model="auto", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError):
            list(stream)


def test_client_disconnect_cancels_upstream(tmp_path: Path, embedder: Embedder) -> None:
    with (
        simulator(completion_tokens=200, inter_token_s=0.05) as slow,
        _gateway(tmp_path, embedder, [expert("slow", slow, ["*"])]) as gw,
    ):
        body = {"messages": MESSAGES, "stream": True}
        with httpx.stream("POST", f"{gw.url}{CHAT}", json=body) as response:
            for line in response.iter_lines():
                if '"content":"' in line and '"content":""' not in line:
                    break  # got a real token: hang up
        deadline = time.monotonic() + 10
        while slow.stats.streams_cancelled == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert slow.stats.streams_cancelled == 1
        assert slow.stats.streams_completed == 0


def test_routing_reads_at_most_a_capped_user_message() -> None:
    long = "integrate " * 1000
    request = ChatRequest((Message("user", long),))
    assert request.routing_query() == long[:ROUTING_QUERY_CHARS]
