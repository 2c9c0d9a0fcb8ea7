"""`POST /v1/route`: the decision without calling any expert."""

from __future__ import annotations

import httpx
import pytest

from tests.gateway.conftest import Gateway, Sim


@pytest.mark.parametrize(
    ("query", "category", "expert"),
    [
        ("What is the square root of 144?", "math", "math-expert"),
        ("How do I reverse a string in Python?", "code", "code-expert"),
        ("Write a sonnet about the moon.", "writing", "generalist"),
    ],
)
def test_route_classifies_and_maps(
    gateway: Gateway, sims: dict[str, Sim], query: str, category: str, expert: str
) -> None:
    body = httpx.post(f"{gateway.url}/v1/route", json={"query": query}).json()
    assert body["category"] == category
    assert body["selected"] == [expert]
    assert body["experts"][0]["name"] == expert
    assert body["fallback"] is False
    probs = [c["probability"] for c in body["categories"]]
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-4
    assert body["route_ms"] > 0 and body["router"] == "centroid"
    assert sum(s.stats.requests_received for s in sims.values()) == 0  # no expert called


def test_route_accepts_chat_messages(gateway: Gateway) -> None:
    body = httpx.post(
        f"{gateway.url}/v1/route",
        json={
            "messages": [
                {"role": "user", "content": "Write a poem."},
                {"role": "assistant", "content": "Roses are red..."},
                {"role": "user", "content": "Now compute 3 to the power of 5."},
            ]
        },
    ).json()
    assert body["category"] == "math"  # the last user message decides


def test_tool_results_and_a_long_system_prompt_do_not_decide(gateway: Gateway) -> None:
    code_words = "Write a Python function that sorts a list. " * 200  # 8,800 characters
    body = httpx.post(
        f"{gateway.url}/v1/route",
        json={
            "messages": [
                {"role": "system", "content": code_words},
                {"role": "user", "content": "Compute 17 times 23."},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "run", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": code_words},
            ]
        },
    ).json()
    assert body["category"] == "math"  # the user's intent, not the tool output or system prompt


def test_out_of_domain_query_falls_back(gateway: Gateway) -> None:
    body = httpx.post(f"{gateway.url}/v1/route", json={"query": "zxqv blorf wuggle"}).json()
    assert body["fallback"] is True
    assert body["selected"] == ["generalist"]
    assert body["reason"]


def test_route_is_deterministic(gateway: Gateway) -> None:
    query = {"query": "Explain recursion with an example in Java."}
    first = httpx.post(f"{gateway.url}/v1/route", json=query).json()
    second = httpx.post(f"{gateway.url}/v1/route", json=query).json()
    first.pop("route_ms"), second.pop("route_ms")
    assert first == second


def test_route_needs_a_query(gateway: Gateway) -> None:
    response = httpx.post(f"{gateway.url}/v1/route", json={})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "query"
