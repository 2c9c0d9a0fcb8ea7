"""An index served over HTTP (`coe index serve`), for gateways on other hosts (`RemoteRetriever`).

    POST /v1/search   {"query": str, "k": int = 10}
                      -> {"passages": [{"id", "score", "text", "title", "metadata",
                                        "similarity"}],
                          "index": "dense" | "lexical" | "hybrid", "doc_count": n}
    GET  /v1/index    the manifest summary (`IndexManifest.summary`): kind, embedder_id,
                      doc_count, pilot_texts, params, metrics, created
    GET  /v1/pilots   {"embedder_id", "pilots": [[float]], "pilot_weights": [float]}
    GET  /healthz     {"status": "ok", "index": kind, "doc_count": n}

Errors have OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`: 400 for a body
that is not a JSON object, a missing or blank `query`, a `k` that is not an integer in
1..`max_k`; 404/405 for unknown paths and methods; 500 if the search itself fails.

Searches run in the server's thread pool (they are CPU-bound); a `ReloadingRetriever` makes a
rebuilt index (`coe index build --out` the same directory) live without a restart. Each request
answers from one index: the summary and the passages of one response never mix two builds.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from experts.retrieval.index import Index
from experts.retrieval.reloading import ReloadingRetriever

__all__ = ["DEFAULT_K", "MAX_K", "create_app"]

logger = logging.getLogger(__name__)

DEFAULT_K = 10
MAX_K = 1000


def _error(
    status: int, message: str, type_: str, code: str | None = None, param: str | None = None
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


def _invalid(message: str, param: str | None, code: str = "invalid_value") -> JSONResponse:
    return _error(400, message, "invalid_request_error", code, param)


def create_app(served: Index | ReloadingRetriever, *, max_k: int = MAX_K) -> FastAPI:
    """The app serving `served` (an `Index`, or a `ReloadingRetriever` to follow rebuilds)."""
    if max_k < 1:
        raise ValueError(f"max_k must be at least 1, not {max_k}")

    def current() -> Index:
        return served.index if isinstance(served, ReloadingRetriever) else served

    app = FastAPI(title="coe index", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _error(exc.status_code, str(exc.detail), type_)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        index = current()
        return {"status": "ok", "index": index.kind.value, "doc_count": len(index)}

    @app.get("/v1/index")
    async def describe() -> dict[str, Any]:
        return current().manifest.summary()

    @app.get("/v1/pilots")
    async def pilots() -> dict[str, Any]:
        index = current()
        return {
            "embedder_id": index.embedder_id,
            "pilots": index.pilots.tolist(),
            "pilot_weights": index.pilot_weights.tolist(),
        }

    @app.post("/v1/search", response_model=None)
    async def search(request: Request) -> JSONResponse | dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            return _invalid("request body is not valid JSON", None, "invalid_json")
        if not isinstance(body, dict):
            return _invalid("request body must be a JSON object", None, "invalid_json")
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            return _invalid("'query' must be a non-empty string", "query")
        k = body.get("k", DEFAULT_K)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max_k:
            return _invalid(f"'k' must be an integer from 1 to {max_k}, not {k!r}", "k")
        index = current()
        try:
            passages = await run_in_threadpool(index.search, query, k)
        except Exception:
            logger.exception("search failed in %s", index.directory)
            return _error(500, "the search failed (see the server's log)", "server_error")
        return {
            "passages": [
                {
                    "id": p.id,
                    "score": p.score,
                    "text": p.text,
                    "title": p.title,
                    "metadata": dict(p.metadata),
                    "similarity": p.similarity,
                }
                for p in passages
            ],
            "index": index.kind.value,
            "doc_count": len(index),
        }

    return app
