"""The retriever contract: a query in, the best passages of one domain out.

    Retriever        the protocol: search(query, k), pilots, pilot_texts, embedder_id
    ├── index.Index                    a dense, lexical or hybrid index artifact
    ├── reloading.ReloadingRetriever   an index directory, reloaded when rebuilt
    └── remote.RemoteRetriever         an index served by `coe index serve` (server.py)

Lifecycle::

    index = load_index(Path("indexes/med"), embedder)   # IndexArtifactError if unusable
    index.search("blood pressure in children", k=5)      # -> list[Passage], best first
    index.pilots                                         # (m, dim) unit vectors, for routing
    index.pilot_texts                                    # exemplar texts, for routing

`search` is synchronous and CPU-bound (it may embed the query): the gateway calls it from a
worker thread, never on the event loop. It is thread-safe: an index is immutable once loaded,
and a rebuilt index is a new object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from routers.embedder import Vectors

__all__ = ["Passage", "Retriever"]


@dataclass(frozen=True)
class Passage:
    """One search result. `score` is only comparable within one search of one index (cosine for
    dense, BM25 for lexical, reciprocal-rank score for hybrid). `similarity`: the cosine of the
    query and the passage in the embedder's space (dense and hybrid indexes; None for lexical),
    comparable across indexes of the same embedder, so the gateway can tell which domain's
    index answers a query best (`gateway.retrieval.select`)."""

    id: str
    score: float
    text: str
    title: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    similarity: float | None = None


@runtime_checkable
class Retriever(Protocol):
    """A searchable domain corpus."""

    @property
    def embedder_id(self) -> str:
        """The vector space of `pilots` (and of the dense vectors, if any)."""

    @property
    def pilots(self) -> Vectors:
        """(m, dim) L2-normalised centroids of the corpus's document embeddings, m >= 1."""

    @property
    def pilot_texts(self) -> tuple[str, ...]:
        """Texts that stand for the corpus (at least one): the document nearest each pilot, or
        the domain's sample queries; an exemplar router routes by them."""

    def search(self, query: str, k: int) -> list[Passage]:
        """At most `k` (>= 1) passages, best first; fewer when fewer match (lexical: no shared
        word) or the corpus is smaller. Raises `ValueError` for `k < 1`."""
        ...
