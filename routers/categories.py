"""Categories defined by exemplar utterances, their embeddings, and the routers built on them.

The exemplar table for an `ExpertTable` is the configured categories plus each expert's
exemplars: added to every category the expert lists, or to a category named after the expert
when it lists none (see `routers.expert_map.served_categories`). So adding an expert with
exemplars makes it routable on the next request; nothing is trained.

`CategoryIndexCache` embeds the table once per registry revision. A new revision re-embeds only
the exemplar texts that the previous index did not hold (whatever the embedder's own cache
has evicted since), so query traffic can never make a registry change expensive.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from routers.base import ExpertTable, RouteDecision
from routers.config import RouterConfig
from routers.embedder import Embedder, Vectors
from routers.expert_map import ExpertMap, served_categories, sort_categories

__all__ = [
    "CategoryIndex",
    "CategoryIndexCache",
    "ExemplarRouter",
    "ExemplarTable",
    "exemplar_table",
    "softmax",
]

ExemplarTable = dict[str, tuple[str, ...]]


def exemplar_table(configured: Mapping[str, Sequence[str]], table: ExpertTable) -> ExemplarTable:
    """Category -> its distinct exemplars (first-seen order); categories without any are left out.

    Labels are sorted, configured exemplars come before experts' ones, experts in table order.
    """
    merged: dict[str, list[str]] = {label: list(texts) for label, texts in configured.items()}
    for spec in table.experts:
        if not spec.enabled or not spec.exemplars:
            continue
        for label in served_categories(spec):
            merged.setdefault(label, []).extend(spec.exemplars)
    return {label: tuple(dict.fromkeys(merged[label])) for label in sorted(merged) if merged[label]}


@dataclass(frozen=True, slots=True)
class CategoryIndex:
    """The embedded exemplar table at one revision.

    `vectors[i]` is the embedding of an exemplar of `labels[owners[i]]`; `centroids[j]` is the
    normalised mean of the exemplars of `labels[j]`.
    """

    revision: int
    table: ExemplarTable
    labels: tuple[str, ...]
    vectors: Vectors
    owners: npt.NDArray[np.intp]
    centroids: Vectors

    @classmethod
    def build(
        cls, revision: int, table: ExemplarTable, vectors_of: Mapping[str, Vectors]
    ) -> CategoryIndex:
        labels = tuple(table)
        texts = [text for label in labels for text in table[label]]
        owners = np.array(
            [j for j, label in enumerate(labels) for _ in table[label]], dtype=np.intp
        )
        if not texts:
            empty = np.empty((0, 0), dtype=np.float32)
            return cls(revision, table, labels, empty, owners, empty)
        vectors = np.stack([vectors_of[t] for t in texts]).astype(np.float32, copy=False)
        starts = np.searchsorted(owners, np.arange(len(labels)))  # rows are grouped by label
        sums = np.add.reduceat(vectors.astype(np.float64), starts, axis=0)
        norms = np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
        centroids = (sums / norms).astype(np.float32)
        return cls(revision, table, labels, vectors, owners, centroids)

    def vectors_by_text(self) -> dict[str, Vectors]:
        texts = (text for label in self.labels for text in self.table[label])
        return dict(zip(texts, self.vectors, strict=True))


class CategoryIndexCache:
    """Keeps the `CategoryIndex` of the latest revision seen; thread-safe.

    Concurrent requests at a new revision wait for one rebuild instead of each doing it.
    """

    def __init__(self, embedder: Embedder, configured: Mapping[str, Sequence[str]]) -> None:
        self._embedder = embedder
        self._configured = {label: tuple(texts) for label, texts in configured.items()}
        self._lock = threading.Lock()
        self._index: CategoryIndex | None = None
        self.builds = 0
        self.embedded = 0

    def get(self, table: ExpertTable) -> CategoryIndex:
        with self._lock:
            current = self._index
            if current is not None and current.revision == table.revision:
                return current
            exemplars = exemplar_table(self._configured, table)
            if current is not None and current.table == exemplars:
                index = replace(current, revision=table.revision)
            else:
                index = self._build(table.revision, exemplars, current)
            self._index = index
            return index

    def _build(
        self, revision: int, exemplars: ExemplarTable, previous: CategoryIndex | None
    ) -> CategoryIndex:
        known = previous.vectors_by_text() if previous is not None else {}
        wanted = dict.fromkeys(t for texts in exemplars.values() for t in texts)
        missing = [t for t in wanted if t not in known]
        if missing:
            known.update(zip(missing, self._embedder.embed(missing), strict=True))
            self.embedded += len(missing)
        self.builds += 1
        return CategoryIndex.build(revision, exemplars, known)


class ExemplarRouter(abc.ABC):
    """A two-step router whose categories are defined by exemplars.

    Subclasses implement one method, `probabilities`; embedding, caching per revision,
    the expert map, thresholds and timing are shared here.
    """

    name: str = "exemplar"

    def __init__(self, embedder: Embedder, config: RouterConfig) -> None:
        self.config = config
        self.embedder = embedder
        self.index_cache = CategoryIndexCache(embedder, config.categories)
        self.expert_map = ExpertMap.from_config(config)

    @abc.abstractmethod
    def probabilities(
        self, index: CategoryIndex, query: Vectors, similarities: Vectors
    ) -> npt.NDArray[np.float64]:
        """P(category) per `index.labels`; `similarities` = cosine of `query` to each exemplar."""

    def categories(self, table: ExpertTable) -> Sequence[str]:
        return self.index_cache.get(table).labels

    def route(self, query: str, table: ExpertTable) -> RouteDecision:
        started = time.perf_counter()
        index = self.index_cache.get(table)
        indexed = embedded = time.perf_counter()
        categories: tuple[tuple[str, float], ...] = ()
        top_similarity: float | None = None
        if index.labels:
            query_vector = self.embedder.embed([query])[0]
            embedded = time.perf_counter()
            similarities = index.vectors @ query_vector
            probs = self.probabilities(index, query_vector, similarities)
            categories = sort_categories(dict(zip(index.labels, probs.tolist(), strict=True)))
            top_similarity = float(similarities.max())
        decision = self.expert_map.decide(categories, table, top_similarity=top_similarity)
        done = time.perf_counter()
        return replace(
            decision,
            router=self.name,
            latency_ms=(done - started) * 1000,
            extra={"index_ms": (indexed - started) * 1000, "embed_ms": (embedded - indexed) * 1000},
        )


def softmax(scores: npt.NDArray[np.floating[Any]], temperature: float) -> npt.NDArray[np.float64]:
    """Numerically stable softmax of `scores / temperature`."""
    z = np.asarray(scores, dtype=np.float64) / temperature
    e = np.exp(z - z.max())
    out: npt.NDArray[np.float64] = e / e.sum()
    return out
