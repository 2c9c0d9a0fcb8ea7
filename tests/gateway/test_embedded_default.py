"""The embedded default as `coe serve` starts it without config: real text from a local model."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from experts.retrieval.build import build_index
from gateway.app import create_app
from gateway.settings import load_settings
from routers.embedder import Embedder
from tests.servers import serve_in_thread

pytestmark = pytest.mark.slow

ADMIN_KEY = "embedded-default-admin-0123456789"
SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "classic_ir_sample.jsonl"


@pytest.fixture(scope="module")
def default_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Built exactly as `coe serve` builds it: the app loads its own embedder and local model
    at start-up (a shared, preloaded embedder once hid a start-up race that corrupted weights)."""
    db = Path(tmp_path_factory.mktemp("default")) / "registry.db"
    app = create_app(load_settings(registry={"url": f"sqlite:///{db}"}, admin_key=ADMIN_KEY))
    with serve_in_thread(app, startup_timeout_s=300) as url:
        yield url


@pytest.mark.parametrize("params", [{"max_tokens": 24, "temperature": 0}, {}])
def test_default_answers_with_generated_text(default_gateway: str, params: dict[str, Any]) -> None:
    response = httpx.post(
        f"{default_gateway}/v1/chat/completions",
        timeout=300,
        json={
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            **params,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    text = body["choices"][0]["message"]["content"]
    assert re.search(r"[A-Za-z]{3,}", text), text
    assert "paris" in text.lower()
    assert body["usage"]["completion_tokens"] > 0
    assert response.headers["x-coe-expert"] in {"smollm2", "smollm2-tutor"}


def test_default_routes_math_to_the_tutor_and_streams(default_gateway: str) -> None:
    route = httpx.post(
        f"{default_gateway}/v1/route", json={"query": "Solve for x: 4x - 8 = 12"}
    ).json()
    assert route["category"] == "math" and route["selected"] == ["smollm2-tutor"]
    with httpx.stream(
        "POST",
        f"{default_gateway}/v1/chat/completions",
        timeout=300,
        json={
            "messages": [{"role": "user", "content": "Solve for x: 4x - 8 = 12"}],
            "max_tokens": 16,
            "stream": True,
        },
    ) as response:
        assert response.headers["x-coe-expert"] == "smollm2-tutor"
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert len(events) > 4  # role chunk, several tokens, finish, [DONE]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("strategy", ["vote", "aggregate"])
def test_default_fuses_its_two_experts(default_gateway: str, strategy: str, stream: bool) -> None:
    client = openai.OpenAI(base_url=f"{default_gateway}/v1", api_key="unused", max_retries=0)
    kwargs: dict[str, Any] = {
        "model": "auto",
        "messages": [{"role": "user", "content": "What is 12 + 7?"}],
        "max_tokens": 24,
        "temperature": 0,
        "extra_body": {"coe": {"fusion": strategy, "experts": ["smollm2", "smollm2-tutor"]}},
        "timeout": 300,
    }
    if stream:
        with client.chat.completions.with_streaming_response.create(
            stream=True, **kwargs
        ) as response:
            headers = response.headers
            chunks = list(response.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        raw = client.chat.completions.with_raw_response.create(**kwargs)
        headers = raw.headers
        text = raw.parse().choices[0].message.content or ""
    assert headers["x-coe-fusion"] == strategy
    used = headers["x-coe-experts"].split(",")
    assert used[:2] == ["smollm2", "smollm2-tutor"] or used[:2] == ["smollm2-tutor", "smollm2"]
    if strategy == "aggregate":
        assert used[-1] == "smollm2"  # the configured aggregator
    assert re.search(r"[A-Za-z0-9]", text), text


def test_default_with_two_retrievers_added_at_run_time(
    default_gateway: str, tmp_path: Path, real_embedder: Embedder
) -> None:
    """Two domain retrievers (MEDLINE, Cranfield samples; hybrid indexes with the gateway's own
    MiniLM) added through the admin API: a medical question is answered by the local model with
    the passages in its context; a poem request is not gated to retrieval."""
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    for domain in ("med", "cran"):
        corpus = tmp_path / f"{domain}.jsonl"
        corpus.write_text("".join(json.dumps(r) + "\n" for r in rows if r["domain"] == domain))
        build_index(corpus, tmp_path / domain, "hybrid", real_embedder, pilots=3)
        spec = {"name": domain, "kind": "retriever", "options": {"index": str(tmp_path / domain)}}
        added = httpx.post(f"{default_gateway}/admin/experts", json=spec, headers=headers)
        assert added.status_code == 201, added.text
    try:
        question = "What do autoimmune diseases of NZB mice tell us about human lupus?"
        body = {"messages": [{"role": "user", "content": question}], "max_tokens": 48}
        response = httpx.post(f"{default_gateway}/v1/chat/completions", json=body, timeout=300)
        assert response.status_code == 200, response.text
        assert response.headers["x-coe-retrievers"].split(",")[0] == "med"
        assert response.headers["x-coe-expert"] in {"smollm2", "smollm2-tutor"}
        passages = response.json()["coe"]["passages"]
        med_ids = {r["_id"] for r in rows if r["domain"] == "med"}
        assert passages[0]["id"] in med_ids and passages[0]["retriever"] == "med"
        assert response.json()["usage"]["prompt_tokens"] > 200  # the passages are in the prompt
        poem = {"messages": [{"role": "user", "content": "Write a short poem about the sea."}],
                "max_tokens": 16}  # fmt: skip
        plain = httpx.post(f"{default_gateway}/v1/chat/completions", json=poem, timeout=300)
        assert plain.headers["x-coe-retrieval"] == "off"
    finally:
        for domain in ("med", "cran"):
            httpx.delete(f"{default_gateway}/admin/experts/{domain}", headers=headers)
