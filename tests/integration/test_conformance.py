"""Conformance with a REAL vLLM CPU worker: the official `openai` client sends the same request
straight to the worker and through the gateway (an expert pinned to it), and the answers are
compared field by field. Greedy decoding (temperature 0) on one idle worker is deterministic.

Covered: logprobs with alternatives, JSON-schema output (vLLM's structured outputs), a named
tool call (vLLM forces the call with structured outputs; SmolLM2 has no tool parser, so
`tool_choice: "auto"` is not tested here but through the simulator in tests/gateway), and the
same tool call streamed in fragments.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from openai.types.chat import ChatCompletion

from gateway.app import create_app
from gateway.settings import load_settings
from routers.embedder import Embedder
from routers.factory import build_router
from tests.servers import serve_in_thread

pytestmark = pytest.mark.vllm

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
    "required": ["city", "country"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def clients(
    vllm_server: str, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[tuple[openai.OpenAI, openai.OpenAI]]:
    """(straight to the worker, through the gateway); the expert `worker` is the model."""
    config = {
        "registry": {"url": "memory://"},
        "router": {"categories": {"any": ["anything at all"]}, "fallback": "worker"},
        "experts": [
            {
                "name": "worker",
                "kind": "vllm",
                "endpoint": vllm_server,
                "model": "smollm2",
                "categories": ["*"],
                "timeout_s": 180,
            }
        ],
    }
    path = Path(tmp_path_factory.mktemp("gw")) / "coe.yaml"
    path.write_text(yaml.safe_dump(config))
    settings = load_settings(path)
    app = create_app(settings, router=build_router(settings.router, embedder))
    with serve_in_thread(app) as url:
        direct = openai.OpenAI(base_url=vllm_server, api_key="unused", max_retries=0, timeout=180)
        gateway = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=180)
        yield direct, gateway


def both(clients: tuple[openai.OpenAI, openai.OpenAI], **kwargs: Any) -> list[ChatCompletion]:
    direct, gateway = clients
    return [
        direct.chat.completions.create(model="smollm2", temperature=0, **kwargs),
        gateway.chat.completions.create(model="worker", temperature=0, **kwargs),
    ]


def without_ids(value: Any) -> Any:
    """`value` with tool-call ids blanked (vLLM draws a fresh random id for every call)."""
    if isinstance(value, dict):
        return {k: ("<id>" if k == "id" else without_ids(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [without_ids(v) for v in value]
    return value


def test_logprobs_round_trip_unchanged(clients: tuple[openai.OpenAI, openai.OpenAI]) -> None:
    direct, routed = both(
        clients,
        messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=8,
        logprobs=True,
        top_logprobs=3,
    )
    assert routed.choices[0].model_dump() == direct.choices[0].model_dump()
    assert routed.usage is not None and direct.usage is not None
    assert routed.usage.model_dump() == direct.usage.model_dump()
    logprobs = routed.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    assert all(len(token.top_logprobs) == 3 for token in logprobs.content)


def test_json_schema_output_round_trips_unchanged(
    clients: tuple[openai.OpenAI, openai.OpenAI],
) -> None:
    direct, routed = both(
        clients,
        messages=[{"role": "user", "content": "Give a city and its country as JSON."}],
        max_tokens=40,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "place", "schema": SCHEMA, "strict": True},
        },
    )
    assert routed.choices[0].model_dump() == direct.choices[0].model_dump()
    content = routed.choices[0].message.content
    assert content is not None
    parsed = json.loads(content)  # the structured output is valid JSON of the schema
    assert set(parsed) == {"city", "country"}


def test_a_named_tool_call_round_trips(clients: tuple[openai.OpenAI, openai.OpenAI]) -> None:
    kwargs: dict[str, Any] = {
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "max_tokens": 40,
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }
    direct, routed = both(clients, **kwargs)
    assert without_ids(routed.choices[0].model_dump()) == without_ids(
        direct.choices[0].model_dump()
    )
    calls = routed.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather"]  # type: ignore[union-attr]
    assert "city" in json.loads(calls[0].function.arguments)  # type: ignore[union-attr]
    direct_client, gateway = clients
    streamed = []
    for client, model in ((direct_client, "smollm2"), (gateway, "worker")):
        with client.chat.completions.stream(model=model, temperature=0, **kwargs) as stream:
            streamed.append(stream.get_final_completion().choices[0].message.model_dump())
    assert without_ids(streamed[1]) == without_ids(streamed[0])
    assert streamed[1]["tool_calls"][0]["function"]["name"] == "get_weather"
