"""An index served over HTTP (`experts.retrieval.server`) answers as the local index does,
through `RemoteRetriever`; bad requests get OpenAI-shaped 400s; an unreachable server is an
error naming its URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from experts.errors import ExpertUnavailable
from experts.retrieval import IndexKind, ReloadingRetriever, Retriever, build_index, load_index
from experts.retrieval.remote import (
    RemoteRetriever,
    RemoteRetrieverError,
    read_remote_pilot_texts,
)
from experts.retrieval.server import create_app
from tests.fakes import HashingEmbedder
from tests.retrieval.conftest import SAMPLE, write_lines
from tests.servers import free_port, serve_in_thread

QUERIES = [
    "blood pressure in children",
    "supersonic axially symmetric nozzles",
    "information retrieval evaluation with relevance judgments",
    "compiler for algol programs",
    "zzzz unknownword",
]


@pytest.fixture(scope="module")
def served(
    indexes: dict[IndexKind, Path], hashing: HashingEmbedder
) -> Iterator[dict[IndexKind, str]]:
    with (
        serve_in_thread(create_app(load_index(indexes[IndexKind.DENSE], hashing))) as dense,
        serve_in_thread(create_app(load_index(indexes[IndexKind.LEXICAL], hashing))) as lexical,
        serve_in_thread(
            create_app(ReloadingRetriever(indexes[IndexKind.HYBRID], hashing), max_k=20)
        ) as hybrid,
    ):
        yield {IndexKind.DENSE: dense, IndexKind.LEXICAL: lexical, IndexKind.HYBRID: hybrid}


@pytest.mark.parametrize("kind", list(IndexKind))
def test_remote_results_equal_local_ones(
    served: dict[IndexKind, str],
    indexes: dict[IndexKind, Path],
    hashing: HashingEmbedder,
    kind: IndexKind,
) -> None:
    local = load_index(indexes[kind], hashing)
    with RemoteRetriever(served[kind], timeout_s=10) as remote:
        assert isinstance(remote, Retriever)
        for query in QUERIES:
            for k in (1, 5, 20):
                assert remote.search(query, k) == local.search(query, k), (query, k)
        similarities = [p.similarity for p in remote.search(QUERIES[0], 5)]
        assert similarities and all(
            (s is None) == (kind is IndexKind.LEXICAL) for s in similarities
        )
        assert remote.pilot_texts == local.pilot_texts
        assert remote.embedder_id == local.embedder_id == "hash-bow"
        np.testing.assert_array_equal(remote.pilots, local.pilots)
        assert remote.pilots.dtype == np.float32
        assert remote.healthy()


def test_the_index_summary(served: dict[IndexKind, str], indexes: dict[IndexKind, Path]) -> None:
    body = httpx.get(f"{served[IndexKind.HYBRID]}/v1/index").json()
    assert body["kind"] == "index/hybrid" and body["index"] == "hybrid"
    assert body["doc_count"] == 40 and body["embedder_id"] == "hash-bow"
    assert body["pilot_texts"] and all(isinstance(t, str) for t in body["pilot_texts"])
    assert "pilot_texts" not in body["params"] and body["params"]["pilots"] >= 1
    health = httpx.get(f"{served[IndexKind.HYBRID]}/healthz").json()
    assert health == {"status": "ok", "index": "hybrid", "doc_count": 40}
    search = httpx.post(
        f"{served[IndexKind.LEXICAL]}/v1/search", json={"query": "boundary layer"}
    ).json()
    assert search["index"] == "lexical" and search["doc_count"] == 40
    assert 1 <= len(search["passages"]) <= 10  # k defaults to 10
    assert set(search["passages"][0]) >= {"id", "score", "text", "title"}


def test_read_remote_pilot_texts(
    served: dict[IndexKind, str], indexes: dict[IndexKind, Path], hashing: HashingEmbedder
) -> None:
    expected = load_index(indexes[IndexKind.DENSE], hashing).pilot_texts
    assert read_remote_pilot_texts(served[IndexKind.DENSE]) == expected
    assert read_remote_pilot_texts(served[IndexKind.DENSE] + "/v1/") == expected


def error_of(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return dict(error)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"query": "wing", "k": 0}, "k"),
        ({"query": "wing", "k": 21}, "k"),
        ({"query": "wing", "k": "3"}, "k"),
        ({"query": "wing", "k": True}, "k"),
        ({"query": "", "k": 3}, "query"),
        ({"query": "   ", "k": 3}, "query"),
        ({"k": 3}, "query"),
        ({"query": 7}, "query"),
    ],
)
def test_bad_requests_are_openai_shaped_400s(
    served: dict[IndexKind, str], body: dict[str, object], param: str
) -> None:
    response = httpx.post(f"{served[IndexKind.HYBRID]}/v1/search", json=body)
    error = error_of(response, 400)
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert error["code"] == "invalid_value"


def test_bodies_that_are_not_json_objects(served: dict[IndexKind, str]) -> None:
    url = f"{served[IndexKind.LEXICAL]}/v1/search"
    for content in (b"{not json", b"[1, 2]"):
        response = httpx.post(url, content=content, headers={"content-type": "application/json"})
        assert error_of(response, 400)["code"] == "invalid_json"
    assert error_of(httpx.get(f"{served[IndexKind.LEXICAL]}/nope"), 404)["type"] == (
        "not_found_error"
    )
    assert error_of(httpx.get(url), 405)["type"] == "invalid_request_error"


def test_remote_errors(served: dict[IndexKind, str]) -> None:
    with RemoteRetriever(served[IndexKind.HYBRID]) as remote:
        with pytest.raises(ValueError, match="k must be at least 1"):
            remote.search("wing", 0)
        with pytest.raises(ValueError, match="blank"):
            remote.search("  ", 3)
        with pytest.raises(ValueError, match="'k' must be an integer from 1 to 20"):
            remote.search("wing", 50)  # the server's limit
    url = f"http://127.0.0.1:{free_port()}"
    with RemoteRetriever(url, timeout_s=2) as remote:
        with pytest.raises(RemoteRetrieverError, match=f"^retriever {url}/v1/search: unreachable"):
            remote.search("wing", 3)
        with pytest.raises(ExpertUnavailable, match=f"{url}/v1/index"):
            _ = remote.pilot_texts
        assert not remote.healthy()
    with pytest.raises(RemoteRetrieverError, match=url):
        read_remote_pilot_texts(url)


def test_not_a_coe_index_server() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"hello": "world"})

    remote = RemoteRetriever("http://other", transport=httpx.MockTransport(handler))
    with pytest.raises(RemoteRetrieverError, match="unexpected answer"):
        remote.search("wing", 3)
    with pytest.raises(RemoteRetrieverError, match="unexpected answer"):
        _ = remote.pilot_texts

    def failing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": {"message": "disk on fire"}})

    remote = RemoteRetriever("http://other", transport=httpx.MockTransport(failing))
    with pytest.raises(RemoteRetrieverError, match="HTTP 500: disk on fire"):
        remote.search("wing", 3)


def test_a_served_reloading_index_follows_rebuilds(
    indexes: dict[IndexKind, Path], hashing: HashingEmbedder, tmp_path: Path
) -> None:
    directory = tmp_path / "idx"
    build_index(SAMPLE, directory, IndexKind.LEXICAL, hashing)
    app = create_app(ReloadingRetriever(directory, hashing, interval_s=0))
    smaller = write_lines(
        tmp_path / "small.jsonl",
        '{"id": "a", "text": "blood pressure in children"}',
        '{"id": "b", "text": "wing flutter at supersonic speed"}',
    )
    with serve_in_thread(app) as url, RemoteRetriever(url, info_ttl_s=0) as remote:
        assert len(remote.search("boundary layer", 20)) > 2
        before = remote.pilot_texts
        build_index(smaller, directory, IndexKind.LEXICAL, hashing, sample_queries=["flutter"])
        assert [p.id for p in remote.search("boundary layer wing", 20)] == ["b"]
        assert remote.pilot_texts == ("flutter",) != before
        assert remote.info()["doc_count"] == 2
        assert len(remote.pilots) == 2
