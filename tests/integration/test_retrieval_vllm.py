"""Retriever experts in front of the REAL vLLM CPU worker: a domain question answered by the
LLM with the retrieved passages in its context, a question outside every domain answered
without, and a retriever added and removed through the admin API while requests flow.

Indexes: lexical indexes of MEDLINE and Cranfield documents (tests/fixtures/classic_ir_sample.jsonl,
attribution in tests/fixtures/README.md).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from experts.retrieval.build import build_index
from gateway.app import create_app
from gateway.settings import load_settings
from routers.embedder import Embedder
from routers.factory import build_router
from tests.gateway.conftest import CATEGORIES
from tests.servers import serve_in_thread

pytestmark = pytest.mark.vllm

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "classic_ir_sample.jsonl"
ADMIN_KEY = "integration-admin-key-0123456789"
MEDICAL = "autoimmune disease in mice and human lupus antibodies"
AERO = "boundary layer flow over a flat plate at supersonic mach numbers"


def build(root: Path, domain: str, embedder: Embedder) -> Path:
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    corpus = root / f"{domain}.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows if r["domain"] == domain))
    build_index(corpus, root / domain, "lexical", embedder, pilots=3)
    return root / domain


@pytest.fixture(scope="module")
def gateway(
    vllm_server: str, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[tuple[str, Path]]:
    root = Path(tmp_path_factory.mktemp("rag"))
    med, cran = build(root, "med", embedder), build(root, "cran", embedder)
    config = {
        "registry": {"url": "memory://"},
        "router": {"categories": CATEGORIES, "fallback": "smollm2"},
        "experts": [
            {"name": "smollm2", "kind": "vllm", "endpoint": vllm_server, "model": "smollm2",
             "categories": ["*"], "timeout_s": 120},
            {"name": "med", "kind": "retriever", "options": {"index": str(med)}},
        ],
    }  # fmt: skip
    path = root / "coe.yaml"
    path.write_text(yaml.safe_dump(config))
    settings = load_settings(path, admin_key=ADMIN_KEY)
    app = create_app(settings, router=build_router(settings.router, embedder))
    with serve_in_thread(app) as url:
        yield url, cran


def ask(url: str, content: str, **coe: Any) -> Any:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    extra = {"coe": coe} if coe else None
    return client.chat.completions.with_raw_response.create(
        model="auto",
        max_tokens=32,
        temperature=0,
        messages=[{"role": "user", "content": content}],
        extra_body=extra,
    )


def test_a_domain_question_gets_the_passages_in_the_worker_context(
    gateway: tuple[str, Path],
) -> None:
    url, _ = gateway
    raw = ask(url, MEDICAL)
    assert raw.headers["x-coe-expert"] == "smollm2" and raw.headers["x-coe-retrievers"] == "med"
    answer = raw.parse()
    passages = answer.model_extra["coe"]["passages"]
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    assert {p["id"] for p in passages} <= {r["_id"] for r in rows if r["domain"] == "med"}
    assert answer.choices[0].message.content
    without = ask(url, MEDICAL, retrieval="off").parse()
    assert answer.usage is not None and without.usage is not None
    # the passages went into the real model's prompt
    assert answer.usage.prompt_tokens > without.usage.prompt_tokens + 100
    poem = ask(url, "Write a short poem about the sea.")
    assert poem.headers["x-coe-retrieval"] == "off" and "x-coe-retrievers" not in poem.headers


def test_a_retriever_added_and_removed_while_requests_flow(gateway: tuple[str, Path]) -> None:
    url, cran = gateway
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    statuses: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(timeout=120) as client:
            while not stop.is_set():
                body = {"messages": [{"role": "user", "content": AERO}], "max_tokens": 8,
                        "coe": {"retrieval": "passages"}}  # fmt: skip
                statuses.append(client.post(f"{url}/v1/chat/completions", json=body).status_code)

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        spec = {"name": "cran", "kind": "retriever", "options": {"index": str(cran)}}
        added = httpx.post(f"{url}/admin/experts", json=spec, headers=headers)
        assert added.status_code == 201, added.text
        routed = ask(url, AERO, retrieval="passages")
        assert routed.headers["x-coe-retrievers"].split(",")[0] == "cran"
        assert httpx.delete(f"{url}/admin/experts/cran", headers=headers).status_code == 200
        after = ask(url, AERO, retrieval="passages")
        assert "cran" not in after.headers.get("x-coe-retrievers", "")
    finally:
        stop.set()
        worker.join()
    assert statuses and set(statuses) == {200}
