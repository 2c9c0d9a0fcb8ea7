"""Nothing an OpenAI client sends or gets back is lost: the official client against the gateway
and, side by side, against the same upstream directly, compared field by field.

The upstream is the vLLM-API *simulator* extended with the shapes agents meet (tool calls,
single, parallel and streamed in fragments; refusals; vLLM's `reasoning_content`; logprobs);
tests/integration compares the real vLLM worker the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam, ChatCompletionToolParam

from routers.embedder import Embedder
from tests.gateway.conftest import Gateway, Sim, expert, run_gateway, simulator, write_config

TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The local time in a city.",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    },
]
ASK: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the weather and the time in Lima?"}
]
SIM_MODEL = "agent-model"


@pytest.fixture(scope="module")
def upstream() -> Iterator[Sim]:
    """One simulator answering like an agent's model: reasoning first, refusing on a marker."""
    with simulator(
        model=SIM_MODEL, completion_tokens=6, reasoning=True, refuse_marker="FORBIDDEN"
    ) as sim:
        yield sim


@pytest.fixture(scope="module")
def agent_gateway(
    upstream: Sim, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[Gateway]:
    config = write_config(tmp_path_factory.mktemp("gw"), [expert("agent", upstream, ["*"])])
    with run_gateway(config, embedder) as gw:
        yield gw


@pytest.fixture
def both(upstream: Sim, agent_gateway: Gateway) -> tuple[openai.OpenAI, openai.OpenAI]:
    """(straight to the upstream, through the gateway pinned to it)"""
    direct = openai.OpenAI(base_url=upstream.url, api_key="unused", max_retries=0)
    return direct, agent_gateway.client()


def ask(client: openai.OpenAI, via_gateway: bool, **kwargs: Any) -> ChatCompletion:
    model = "agent" if via_gateway else SIM_MODEL
    completion: ChatCompletion = client.chat.completions.create(model=model, **kwargs)
    return completion


def same_choice(direct: ChatCompletion, routed: ChatCompletion) -> None:
    """Every field of the choice and the usage; only id, created and model are the gateway's."""
    assert routed.choices[0].model_dump() == direct.choices[0].model_dump()
    assert routed.usage is not None and direct.usage is not None
    assert routed.usage.model_dump() == direct.usage.model_dump()


def final_of_stream(client: openai.OpenAI, via_gateway: bool, **kwargs: Any) -> ChatCompletion:
    """The streamed answer accumulated by the official client's stream helper."""
    model = "agent" if via_gateway else SIM_MODEL
    with client.chat.completions.stream(model=model, **kwargs) as stream:
        return stream.get_final_completion()


def test_parallel_tool_calls_non_streaming(both: tuple[openai.OpenAI, openai.OpenAI]) -> None:
    direct, gateway = both
    expected = ask(direct, False, messages=ASK, tools=TOOLS)
    got = ask(gateway, True, messages=ASK, tools=TOOLS)
    same_choice(expected, got)
    calls = got.choices[0].message.tool_calls or []
    assert got.choices[0].finish_reason == "tool_calls"
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    assert json.loads(calls[0].function.arguments) == {"query": ASK[0]["content"]}  # type: ignore[union-attr]
    assert got.choices[0].message.content is None


def test_one_tool_when_parallel_calls_are_off(both: tuple[openai.OpenAI, openai.OpenAI]) -> None:
    direct, gateway = both
    kwargs: dict[str, Any] = {"messages": ASK, "tools": TOOLS, "parallel_tool_calls": False}
    got = ask(gateway, True, **kwargs)
    same_choice(ask(direct, False, **kwargs), got)
    assert len(got.choices[0].message.tool_calls or []) == 1


def test_streamed_tool_call_fragments_reassemble_the_same(
    both: tuple[openai.OpenAI, openai.OpenAI],
) -> None:
    direct, gateway = both
    expected = final_of_stream(direct, False, messages=ASK, tools=TOOLS)
    got = final_of_stream(gateway, True, messages=ASK, tools=TOOLS)
    assert got.choices[0].message.model_dump() == expected.choices[0].message.model_dump()
    assert got.choices[0].finish_reason == expected.choices[0].finish_reason == "tool_calls"
    assert len(got.choices[0].message.tool_calls or []) == 2


def test_streamed_fragments_keep_their_index(agent_gateway: Gateway) -> None:
    stream = agent_gateway.client().chat.completions.create(
        model="agent", messages=ASK, tools=TOOLS, stream=True
    )
    fragments = [
        call
        for chunk in stream
        for choice in chunk.choices
        for call in (choice.delta.tool_calls or [])
    ]
    assert {f.index for f in fragments} == {0, 1}
    assert sum(1 for f in fragments if f.id) == 2  # id and name once per call, then arguments
    assert len(fragments) > 4


def test_reasoning_content_and_logprobs(both: tuple[openai.OpenAI, openai.OpenAI]) -> None:
    direct, gateway = both
    kwargs: dict[str, Any] = {
        "messages": [{"role": "user", "content": "Name three rivers."}],
        "logprobs": True,
        "top_logprobs": 2,
    }
    expected, got = ask(direct, False, **kwargs), ask(gateway, True, **kwargs)
    same_choice(expected, got)
    message = got.choices[0].message
    assert message.model_extra and message.model_extra["reasoning_content"]
    logprobs = got.choices[0].logprobs
    assert logprobs is not None and logprobs.content and len(logprobs.content[0].top_logprobs) == 2
    streamed = final_of_stream(gateway, True, **kwargs)
    assert streamed.choices[0].message.content == message.content


def test_refusal(both: tuple[openai.OpenAI, openai.OpenAI]) -> None:
    direct, gateway = both
    kwargs: dict[str, Any] = {"messages": [{"role": "user", "content": "FORBIDDEN plan"}]}
    got = ask(gateway, True, **kwargs)
    same_choice(ask(direct, False, **kwargs), got)
    assert got.choices[0].message.refusal and got.choices[0].message.content is None
    streamed = final_of_stream(gateway, True, **kwargs)
    assert streamed.choices[0].message.refusal == got.choices[0].message.refusal


def test_a_multi_turn_tool_loop(agent_gateway: Gateway, upstream: Sim) -> None:
    client = agent_gateway.client()
    messages: list[ChatCompletionMessageParam] = list(ASK)
    first = client.chat.completions.create(model="agent", messages=messages, tools=TOOLS)
    calls = first.choices[0].message.tool_calls or []
    messages.append(first.choices[0].message.model_dump(exclude_none=True))  # type: ignore[arg-type]
    for call in calls:
        messages.append({"role": "tool", "tool_call_id": call.id, "content": "18 C, sunny"})
    final = client.chat.completions.create(model="agent", messages=messages, tools=TOOLS)
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content and "sunny" in final.choices[0].message.content
    sent = upstream.stats.last_request_body
    assert sent is not None
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool", "tool"]
    assert sent["messages"][1]["tool_calls"][0]["id"] == calls[0].id
    assert sent["messages"][2]["tool_call_id"] == calls[0].id
    assert sent["tools"] == TOOLS


def test_request_fields_reach_the_expert_unchanged(agent_gateway: Gateway, upstream: Sim) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    body: dict[str, Any] = {
        "model": "agent",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]},
        ],
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_time"}},
        "parallel_tool_calls": False,
        "response_format": {"type": "json_object"},
        "logprobs": True,
        "top_logprobs": 3,
        "seed": 11,
        "stop": ["\n\n"],
        "user": "user-42",
    }
    extra = {"x_vendor_field": {"kept": True}}
    answer = agent_gateway.client().chat.completions.create(**body, extra_body=extra)
    calls = answer.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_time"]
    sent = upstream.stats.last_request_body
    assert sent is not None
    for key, value in (body | extra).items():
        if key != "model":
            assert sent[key] == value, key


def test_a_long_prompt_with_two_images_fits_the_default_body_limit(
    agent_gateway: Gateway, upstream: Sim
) -> None:
    """About 128k tokens of text (~520 KB) and two 3 MB images (base64: 4 MB each)."""
    image: dict[str, Any] = {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64," + "A" * (4 * 1024 * 1024)},
    }
    message = {
        "role": "user",
        "content": [{"type": "text", "text": "word " * 128_000}, image, image],
    }
    answer = agent_gateway.client().chat.completions.create(model="agent", messages=[message])  # type: ignore[list-item]
    assert answer.choices[0].message.content
    sent = upstream.stats.last_request_body
    assert sent is not None and sent["messages"][0]["content"][1] == image


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"tools": TOOLS}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"tools": TOOLS, "tool_choice": "none"}, "not configured"),
        ({}, "not configured"),
    ],
)
def test_tool_and_structured_requests_are_answered_by_one_expert(
    agent_gateway: Gateway, extra: dict[str, Any], reason: str
) -> None:
    raw = agent_gateway.client().chat.completions.with_raw_response.create(
        model="agent", messages=ASK, **extra
    )
    assert raw.headers["x-coe-fusion"] == "none"
    assert raw.headers["x-coe-fusion-reason"] == reason
