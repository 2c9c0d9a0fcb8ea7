"""`RetrieverExpert`: a domain retriever in the registry, answering with passages.

A `kind: retriever` expert searches one domain's index: in-process (`options.index`, a
directory built by `coe index build`, re-read when it changes; a broken rebuild never replaces
the working index) or over HTTP (`endpoint`, an index served by `coe index serve`). As an
expert it answers a chat request with the passages its index finds for the request's routing
query (`passages_text`, and the passages themselves in `ChatResult.response["coe"]`); the
gateway also calls `search` directly to put passages in an LLM's context
(`gateway/retrieval.py`).

Routing needs no training: a retriever without `exemplars` gets its index's pilot texts
(`with_pilots`, called when it is added), so the exemplar router gains a category named after
it on the next request (RouterRetriever's pilot embeddings). Options:

    index     the index directory (or `endpoint` instead)
    k         passages per answer (default 5)
"""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import httpx

from experts.base import ExpertHealth
from experts.chat import ChatDelta, ChatRequest, ChatResult, Usage
from experts.errors import ExpertError, ExpertUnavailable
from registry.spec import ExpertSpec
from routers.embedder import Embedder

if TYPE_CHECKING:
    from experts.retrieval.base import Passage, Retriever

__all__ = [
    "RetrieverExpert",
    "RetrieverStore",
    "passage_json",
    "passages_text",
    "with_pilots",
]

DEFAULT_K = 5
PREVIEW_CHARS = 400


def passage_json(passage: Passage, retriever: str) -> dict[str, Any]:
    """A passage as the `coe.passages` response extension carries it."""
    return {
        "id": passage.id,
        "score": passage.score,
        "retriever": retriever,
        "title": passage.title,
        "text": passage.text,
    }


def passages_text(passages: Sequence[tuple[str, Passage]]) -> str:
    """The assistant message listing (retriever, passage) pairs, one per paragraph."""
    if not passages:
        return "No passage of the consulted indexes matches this query."
    lines = []
    for i, (retriever, p) in enumerate(passages, start=1):
        text = p.text if len(p.text) <= PREVIEW_CHARS else p.text[:PREVIEW_CHARS].rstrip() + " ..."
        title = f"{p.title}. " if p.title else ""
        lines.append(f"{i}. [{p.id}] ({retriever}) {title}{text}")
    return "\n\n".join(lines)


class RetrieverStore:
    """The retrievers of the process, one per index directory or endpoint, loaded on first use
    and shared by every expert (and every registry revision) that names it."""

    def __init__(
        self,
        embedder: Callable[[], Embedder],
        *,
        reload_interval_s: float = 2.0,
        transport: Callable[[], httpx.BaseTransport] | None = None,
    ):
        self._embedder = embedder
        self._interval = reload_interval_s
        self._transport = transport
        """Builds the HTTP transport of a remote index's client (the gateway's guarded one)."""
        self._loaded: dict[str, Retriever] = {}
        self._lock = threading.Lock()

    def get(self, spec: ExpertSpec) -> Retriever:
        """The spec's retriever; raises `ValueError` naming the directory or URL if unusable."""
        key = spec.endpoint or str(spec.options["index"])
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = self._load(spec)
            return self._loaded[key]

    def _load(self, spec: ExpertSpec) -> Retriever:
        from experts.retrieval.artifact import IndexArtifactError

        if spec.endpoint:
            from experts.retrieval.remote import RemoteRetriever

            transport = self._transport() if self._transport is not None else None
            return RemoteRetriever(spec.endpoint, timeout_s=spec.timeout_s, transport=transport)
        from experts.retrieval.reloading import ReloadingRetriever

        try:
            return ReloadingRetriever(
                Path(str(spec.options["index"])).expanduser(),
                self._embedder(),
                interval_s=self._interval,
            )
        except IndexArtifactError as exc:
            raise ValueError(str(exc)) from exc


def with_pilots(spec: ExpertSpec) -> ExpertSpec:
    """A retriever spec with its index's pilot texts as exemplars when it has none. An
    in-process index is checked whole either way. Raises `ValueError` naming the index when it
    cannot be used."""
    if spec.kind.value != "retriever" or (spec.exemplars and spec.endpoint):
        return spec
    if spec.endpoint:
        from experts.retrieval.remote import read_remote_pilot_texts

        texts = read_remote_pilot_texts(spec.endpoint, timeout_s=spec.connect_timeout_s)
    else:
        from experts.retrieval.artifact import IndexArtifactError, load_index_artifact

        try:  # the whole artifact is checked (SHA-256 of its weights), not only its manifest
            manifest, _ = load_index_artifact(Path(str(spec.options["index"])).expanduser())
        except IndexArtifactError as exc:
            raise ValueError(str(exc)) from exc
        texts = manifest.pilot_texts
    return spec if spec.exemplars else spec.model_copy(update={"exemplars": list(texts)})


class RetrieverExpert:
    """A retriever as an expert (module docstring)."""

    def __init__(self, spec: ExpertSpec, store: RetrieverStore) -> None:
        k = spec.options.get("k", DEFAULT_K)
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 100:
            raise ValueError(f"expert {spec.name!r}: options.k must be an integer in 1..100")
        self._spec = spec
        self._store = store
        self.k = k

    @property
    def spec(self) -> ExpertSpec:
        return self._spec

    async def start(self) -> None:
        await self._retriever()

    async def _retriever(self) -> Retriever:
        try:
            return await anyio.to_thread.run_sync(self._store.get, self._spec)
        except (ValueError, OSError) as exc:
            raise ExpertUnavailable(
                f"retriever {self._spec.name!r} cannot load its index: {exc}", expert=self.name
            ) from exc

    @property
    def name(self) -> str:
        return self._spec.name

    async def search(self, query: str, k: int | None = None) -> list[Passage]:
        """The best passages for `query` (off the event loop); `ExpertError` on failure."""
        retriever = await self._retriever()
        try:
            return await anyio.to_thread.run_sync(retriever.search, query, k or self.k)
        except ExpertError:
            raise
        except (OSError, ValueError, RuntimeError) as exc:
            raise ExpertUnavailable(
                f"retriever {self._spec.name!r} failed: {exc}", expert=self.name
            ) from exc

    async def chat(self, request: ChatRequest) -> ChatResult:
        passages = await self.search(request.routing_query())
        pairs = [(self.name, p) for p in passages]
        return ChatResult(
            content=passages_text(pairs),
            model=self.name,
            usage=Usage(),
            response={"coe": {"passages": [passage_json(p, self.name) for p in passages]}},
        )

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ChatDelta, None]:
        result = await self.chat(request)
        yield ChatDelta(content=result.text)
        yield ChatDelta(finish_reason="stop", usage=Usage() if request.include_usage else None)

    async def health(self) -> ExpertHealth:
        try:
            await self._retriever()
        except ExpertError as exc:
            return ExpertHealth(healthy=False, detail=exc.message)
        return ExpertHealth(healthy=True)

    async def aclose(self) -> None:
        """Indexes are shared through the store and live as long as the process."""
