"""The gateway in front of a REAL vLLM CPU server (SmolLM2-135M-Instruct, two served names).

Two experts point at the worker under different served model names and serve different router
categories; queries of two categories are routed through the gateway to the right one, and a real
generated answer streams back through the official `openai` client.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from gateway.app import create_app
from gateway.settings import load_settings
from routers.embedder import Embedder
from routers.factory import build_router
from tests.gateway.conftest import CATEGORIES
from tests.servers import serve_in_thread

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def gateway_url(
    vllm_server: str, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[str]:
    common = {"kind": "vllm", "endpoint": vllm_server, "timeout_s": 120}
    config = {
        "registry": {"url": "memory://"},
        "router": {"categories": CATEGORIES, "fallback": "smollm2-writer"},
        "fusion": {"aggregator": "smollm2-writer"},
        "experts": [
            {"name": "smollm2-math", "model": "smollm2", "categories": ["math", "code"], **common},
            {"name": "smollm2-writer", "model": "smollm2-b", "categories": ["writing"], **common},
        ],
    }
    path = Path(tmp_path_factory.mktemp("gw")) / "coe.yaml"
    path.write_text(yaml.safe_dump(config))
    settings = load_settings(path)
    app = create_app(settings, router=build_router(settings.router, embedder))
    with serve_in_thread(app) as url:
        yield url


def test_two_categories_route_to_two_vllm_experts(gateway_url: str) -> None:
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0)
    math = client.chat.completions.with_raw_response.create(
        model="auto",
        max_tokens=24,
        temperature=0,
        messages=[{"role": "user", "content": "What is 12 plus 30?"}],
    )
    assert math.headers["x-coe-expert"] == "smollm2-math"
    assert math.headers["x-coe-category"] == "math"
    answer = math.parse()
    assert answer.choices[0].message.content
    assert answer.usage is not None and 0 < answer.usage.completion_tokens <= 24

    with client.chat.completions.with_streaming_response.create(
        model="auto",
        max_tokens=32,
        temperature=0,
        stream=True,
        messages=[{"role": "user", "content": "Write a short poem about the sea."}],
    ) as response:
        assert response.headers["x-coe-expert"] == "smollm2-writer"
        assert response.headers["x-coe-category"] == "writing"
        chunks = list(response.parse())
    assert {c.model for c in chunks} == {"smollm2-writer"}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    words = [w for w in text.split() if w.isalpha()]
    assert len(words) >= 5, text  # real generated words, not empty or garbage bytes
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in {"stop", "length"}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("strategy", ["vote", "aggregate"])
def test_fused_requests_through_the_worker(gateway_url: str, strategy: str, stream: bool) -> None:
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0)
    kwargs: dict[str, Any] = {
        "model": "auto",
        "max_tokens": 24,
        "temperature": 0,
        "messages": [{"role": "user", "content": "What is 12 plus 30?"}],
        "extra_body": {"coe": {"fusion": strategy, "experts": ["smollm2-math", "smollm2-writer"]}},
    }
    if stream:
        with client.chat.completions.with_streaming_response.create(
            stream=True, stream_options={"include_usage": True}, **kwargs
        ) as response:
            headers = response.headers
            chunks = list(response.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        usage = chunks[-1].usage
    else:
        raw = client.chat.completions.with_raw_response.create(**kwargs)
        headers, answer = raw.headers, raw.parse()
        text, usage = answer.choices[0].message.content or "", answer.usage
    assert headers["x-coe-fusion"] == strategy
    calls = 3 if strategy == "aggregate" else 2
    assert len(headers["x-coe-experts"].split(",")) == calls
    assert [w for w in text.split() if w.strip(".,").isalnum()], text
    # usage sums every call: the candidates' prompts (and, for aggregate, the aggregator's)
    alone = [
        client.chat.completions.create(**{**kwargs, "model": name, "extra_body": None}).usage
        for name in ("smollm2-math", "smollm2-writer")
    ]
    candidates_prompt = sum(u.prompt_tokens for u in alone if u is not None)
    assert usage is not None
    if strategy == "vote":
        assert usage.prompt_tokens == candidates_prompt
    else:
        assert usage.prompt_tokens > candidates_prompt
