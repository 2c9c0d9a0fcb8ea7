"""`RemoteRetriever`: an index served by `coe index serve` (`experts.retrieval.server`), as a
`Retriever`.

    retriever = RemoteRetriever("http://10.0.0.7:8100", timeout_s=5.0)
    retriever.search("blood pressure in children", k=5)   # POST /v1/search
    retriever.pilot_texts, retriever.pilots                # GET /v1/index, GET /v1/pilots
    read_remote_pilot_texts("http://10.0.0.7:8100")        # one GET /v1/index, no client kept

The base URL may end in `/v1` (as the registry's OpenAI endpoints do); it is the same server.

Synchronous (httpx.Client), like `Index.search`: the gateway calls it from a worker thread.
The client is thread-safe and keeps connections alive; `close()` (or `with`) releases them.

The index's description (embedder id, pilots, pilot texts) is fetched on first use and again
when older than `info_ttl_s`, so a rebuilt remote index is noticed. Failures raise
`RemoteRetrieverError` (an `experts.errors.ExpertUnavailable`) naming the URL: unreachable,
timed out, an error status, a body that is not what the server sends. `k < 1` or a blank query
raise `ValueError` before any request (as does a 400 from the server, e.g. `k` above its limit).
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any

import httpx
import numpy as np

from experts.errors import ExpertUnavailable
from experts.retrieval.base import Passage
from routers.embedder import Vectors

__all__ = [
    "DEFAULT_INFO_TTL_S",
    "RemoteRetriever",
    "RemoteRetrieverError",
    "read_remote_pilot_texts",
]

DEFAULT_INFO_TTL_S = 30.0


class RemoteRetrieverError(ExpertUnavailable):
    """A remote index that cannot answer; the message starts with its URL."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"retriever {url}: {message}", expert=url)
        self.url = url


class RemoteRetriever:
    """The index served at `base_url` (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        timeout_s: float = 10.0,
        *,
        info_ttl_s: float = DEFAULT_INFO_TTL_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base = base_url.rstrip("/")
        self.base_url = base.removesuffix("/v1")
        self._client = httpx.Client(
            base_url=self.base_url, timeout=timeout_s, transport=transport, trust_env=False
        )
        self._timeout = timeout_s
        self._ttl = info_ttl_s
        self._lock = threading.Lock()
        self._info: dict[str, Any] | None = None
        self._info_at = 0.0
        self._pilots: tuple[str, Vectors] | None = None  # (data_hash + created, vectors)

    def __enter__(self) -> RemoteRetriever:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"RemoteRetriever({self.base_url!r})"

    # -- the Retriever protocol ---------------------------------------------------------

    @property
    def embedder_id(self) -> str:
        return str(self.info()["embedder_id"])

    @property
    def pilot_texts(self) -> tuple[str, ...]:
        return tuple(self.info()["pilot_texts"])

    @property
    def pilots(self) -> Vectors:
        info = self.info()
        version = f"{info['data_hash']}@{info['created']}"
        cached = self._pilots
        if cached is not None and cached[0] == version:
            return cached[1]
        data = self._request("GET", "/v1/pilots")
        try:
            vectors = np.asarray(data["pilots"], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise self._garbage("/v1/pilots", exc) from exc
        if vectors.ndim != 2 or len(vectors) == 0:
            raise self._garbage("/v1/pilots", f"pilots of shape {vectors.shape}")
        self._pilots = (version, vectors)
        return vectors

    def search(self, query: str, k: int) -> list[Passage]:
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        if not query.strip():
            raise ValueError("the query is blank")
        data = self._request("POST", "/v1/search", {"query": query, "k": k})
        try:
            return [
                Passage(
                    id=str(p["id"]),
                    score=float(p["score"]),
                    text=str(p["text"]),
                    title=str(p.get("title", "")),
                    metadata=dict(p.get("metadata") or {}),
                    similarity=_similarity(p.get("similarity")),
                )
                for p in data["passages"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise self._garbage("/v1/search", exc) from exc

    # -- the rest -----------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """The served index's summary (`GET /v1/index`), cached for `info_ttl_s`."""
        now = time.monotonic()
        with self._lock:
            if self._info is not None and now - self._info_at < self._ttl:
                return self._info
        data = self._request("GET", "/v1/index")
        missing = [
            key
            for key in ("embedder_id", "pilot_texts", "doc_count", "data_hash", "created")
            if key not in data
        ]
        if missing or not isinstance(data.get("pilot_texts"), list):
            raise self._garbage("/v1/index", f"missing or malformed {missing or 'pilot_texts'}")
        with self._lock:
            self._info, self._info_at = data, now
        return data

    def healthy(self) -> bool:
        """Whether `GET /healthz` answers 200 (never raises)."""
        try:
            return self._client.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def _request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        try:
            response = self._client.request(method, path, json=body)
        except httpx.TimeoutException as exc:
            raise RemoteRetrieverError(
                url, f"timed out after {self._timeout:g} s ({type(exc).__name__})"
            ) from exc
        except httpx.HTTPError as exc:
            raise RemoteRetrieverError(url, f"unreachable ({type(exc).__name__}: {exc})") from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code == 400:
            raise ValueError(f"retriever {url}: {_message(data) or response.text[:200]}")
        if response.status_code != 200:
            detail = _message(data) or response.text[:200]
            raise RemoteRetrieverError(url, f"HTTP {response.status_code}: {detail}")
        if not isinstance(data, dict):
            raise self._garbage(path, "the body is not a JSON object")
        return data

    def _garbage(self, path: str, why: object) -> RemoteRetrieverError:
        return RemoteRetrieverError(
            f"{self.base_url}{path}", f"unexpected answer (not a coe index server?): {why}"
        )


def _similarity(value: Any) -> float | None:
    """A passage's optional `similarity` (absent from older servers and lexical indexes)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"similarity {value!r} is not a number")
    return float(value)


def _message(data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("message", ""))
    return ""


def read_remote_pilot_texts(base_url: str, timeout_s: float = 5.0) -> tuple[str, ...]:
    """The pilot texts of the index served at `base_url` (one `GET /v1/index`);
    `RemoteRetrieverError` naming the URL if it cannot be had."""
    with RemoteRetriever(base_url, timeout_s) as retriever:
        texts = retriever.pilot_texts
    if not texts or not all(isinstance(t, str) for t in texts):
        raise RemoteRetrieverError(f"{base_url}/v1/index", "no pilot texts")
    return texts
