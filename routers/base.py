"""The `Router` protocol and its answer, `RouteDecision`.

A router maps one query to an ordered list of experts. It is synchronous and CPU-bound
(embedding, a matrix product): the gateway always calls it off the event loop
(`anyio.to_thread.run_sync`), so no router ever needs to be async.

Two-step routing (Composition of Experts): query -> category probabilities -> category-to-expert
map -> experts. Routers that score experts directly leave `categories` empty.

Lifecycle::

    router = CentroidRouter(embedder, config)      # loads nothing heavy until needed
    decision = router.route(query, table)          # table = the registry's current experts
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from registry.spec import ExpertSpec
from routers.embedder import Embedder

__all__ = ["ExpertTable", "RouteDecision", "Router", "ScoredExpert"]


@dataclass(frozen=True, slots=True)
class ExpertTable:
    """The enabled experts at one registry revision. Routers may cache work per `revision`."""

    revision: int
    experts: tuple[ExpertSpec, ...]

    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.experts)

    def get(self, name: str) -> ExpertSpec | None:
        return next((e for e in self.experts if e.name == name), None)


@dataclass(frozen=True, slots=True)
class ScoredExpert:
    """An expert with the router's score for it (probability mass or predicted quality)."""

    name: str
    score: float


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """What the router decided for one query.

    `experts` is ordered best first; the gateway calls `experts[0]` and fails over down the
    list. `selected` is how many of them the router wants called together (top-k for fusion;
    1 for plain routing). `fallback` is True when the router abstained (confidence below the
    threshold, or no expert serves the category) and `experts[0]` is the configured fallback.
    `fusion` is the strategy a trained fan-out rule prescribes for the `selected` experts
    (`routers.fusion_rule.FusionRule`), None when the router has no such rule.
    """

    experts: tuple[ScoredExpert, ...]
    categories: tuple[tuple[str, float], ...] = ()
    fallback: bool = False
    reason: str = ""
    selected: int = 1
    latency_ms: float = 0.0
    router: str = ""
    top_similarity: float | None = None
    extra: dict[str, float] = field(default_factory=dict)
    fusion: str | None = None

    @property
    def category(self) -> str | None:
        """The most probable category, if the router classifies into categories."""
        return self.categories[0][0] if self.categories else None

    @property
    def confidence(self) -> float | None:
        return self.categories[0][1] if self.categories else None


@runtime_checkable
class Router(Protocol):
    """Chooses experts for a query. Deterministic for the same table and query."""

    @property
    def name(self) -> str:
        """A short id for logs, metrics and `RouteDecision.router` (e.g. 'centroid')."""

    @property
    def embedder(self) -> Embedder:
        """What the router embeds queries with (fusion compares answers with it too)."""

    def route(self, query: str, table: ExpertTable) -> RouteDecision: ...

    def categories(self, table: ExpertTable) -> Sequence[str]:
        """The category labels this router can output for `table`."""
