"""Upstreams that answer nonsense (a fault test with a stub upstream, not a model): a 200 with
an HTML page, a JSON body that is no chat completion, a stream that is no SSE. The gateway
answers 502 in OpenAI's shape naming the expert (or fails over first), and never hangs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from routers.embedder import Embedder
from tests.gateway.conftest import Sim, expert, run_gateway, write_config
from tests.servers import serve_in_thread

ANSWERS: dict[str, tuple[str, bytes]] = {
    "html": ("text/html", b"<html><body>502 Bad Gateway (nginx)</body></html>"),
    "json": ("application/json", b'{"hello": "world"}'),
    "half": ("application/json", b'{"id": "x", "choices": [{"message": {"content": "cut'),
    "sse-junk": ("text/event-stream", b"data: {not json\n\ndata: [DONE]\n\n"),
    "plain": ("text/plain", b"I am not an OpenAI server"),
}


@contextmanager
def nonsense(kind: str) -> Iterator[str]:
    media, body = ANSWERS[kind]

    async def chat(_: Request) -> Response:
        return Response(body, media_type=media)

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    with serve_in_thread(app) as url:
        yield f"{url}/v1"


def garbled(name: str, url: str) -> dict[str, Any]:
    return {"name": name, "kind": "openai", "endpoint": url, "model": "m", "categories": ["math"]}


@pytest.mark.parametrize("kind", sorted(ANSWERS))
@pytest.mark.parametrize("stream", [False, True])
def test_nonsense_from_an_upstream_is_a_clean_502(
    kind: str, stream: bool, tmp_path: Path, embedder: Embedder
) -> None:
    with nonsense(kind) as url:
        config = write_config(tmp_path, [garbled("garbled", url)], router={"fallback": None})
        with run_gateway(config, embedder) as gw:
            started = time.monotonic()
            body = {"model": "garbled", "messages": [{"role": "user", "content": "2+2?"}]}
            response = httpx.post(
                f"{gw.url}/v1/chat/completions", json={**body, "stream": stream}, timeout=30
            )
            assert time.monotonic() - started < 10  # no hang
    if response.status_code == 200:  # the stream had begun: the error comes in it
        assert stream and response.text.rstrip().endswith("data: [DONE]"), response.text
        assert '"error"' in response.text and "garbled" in response.text
        return
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["type"] and "garbled" in error["message"], error


def test_nonsense_before_the_first_byte_fails_over(
    tmp_path: Path, sims: dict[str, Sim], embedder: Embedder
) -> None:
    with nonsense("html") as url:
        experts = [garbled("garbled", url), expert("healthy", sims["math"], ["math"])]
        config = write_config(tmp_path, experts, router={"fallback": "healthy"})
        with run_gateway(config, embedder) as gw:
            body = {"messages": [{"role": "user", "content": "Solve for x: 2x + 3 = 11."}]}
            answers = [httpx.post(f"{gw.url}/v1/chat/completions", json=body) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert {a.headers["x-coe-expert"] for a in answers} == {"healthy"}
    assert answers[0].headers.get("x-coe-failover-from") == "garbled", dict(answers[0].headers)
