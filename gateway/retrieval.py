"""Retrieval-gated answers: search the domain retrievers the router is sure of, then answer with
their passages or with an LLM that has them in context (ExpertRAG's gating: retrieve only when
the query belongs to a retriever's domain).

    decision = retrieval_decision(request, route, table, settings)   # gate, mode, domains
    passages = await retrieve(decision, query, pool, k)              # searched, fused
    request  = with_context(request, passages, chars)                # mode `context`

Gate: each retriever's domain probability is the router's probability of the category it serves
(by default the category named after it, defined by its pilot texts). When the most probable
domain reaches `retrieval.threshold`, it is searched, with the next ones at `also_above` or more
(at most `max_retrievers` in all). Otherwise the LLMs answer alone (`reason` says why).
Several: their rankings are fused by weighted reciprocal rank (weights: the domain
probabilities; RouterRetriever's multi-domain setting).
Mode: the request's `coe.retrieval` > `retrieval.routes[<top retriever>]` > `retrieval.mode`.
A retriever that fails is dropped; when all fail, the LLMs answer alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from experts.chat import ChatRequest, Message
from experts.errors import ExpertError
from experts.retriever import RetrieverExpert, passages_text
from gateway import tracing
from gateway.pool import ExpertPool
from gateway.retrieval_mode import RetrievalMode
from gateway.settings import RetrievalSettings
from registry.spec import ExpertKind
from routers.base import ExpertTable, RouteDecision
from routers.expert_map import served_categories

if TYPE_CHECKING:
    from experts.retrieval.base import Passage

__all__ = ["Cited", "RetrievalDecision", "retrieval_decision", "retrieve", "with_context"]

log = logging.getLogger("coe.retrieval")
_INSTRUCTION = (
    "Answer the user's question using the passages below when they are relevant. Cite every "
    "passage you use by its id in square brackets, for example [{example}]. If the passages do "
    "not contain the answer, say so and answer from your own knowledge.\n\nPassages:\n"
)


@dataclass(frozen=True, slots=True)
class RetrievalDecision:
    """Whether and where to retrieve: `retrievers` (name, domain probability), best first;
    empty when the request is not gated to retrieval (`mode` is then `off`)."""

    mode: RetrievalMode
    retrievers: tuple[tuple[str, float], ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Cited:
    """A retrieved passage with the key the answer cites it by (its id; `retriever:id` when
    two domains share an id)."""

    retriever: str
    passage: Passage
    cite: str
    score: float


def retriever_names(table: ExpertTable) -> tuple[str, ...]:
    return tuple(s.name for s in table.experts if s.kind is ExpertKind.RETRIEVER)


def retrieval_decision(
    request: ChatRequest,
    route: RouteDecision | None,
    table: ExpertTable,
    available: Sequence[str],
    settings: RetrievalSettings,
) -> RetrievalDecision:
    """The gate and the mode (module docstring); `available`: the experts in rotation."""
    names = [n for n in retriever_names(table) if n in available]
    asked = RetrievalMode(request.retrieval) if request.retrieval else None
    off = RetrievalMode.OFF
    if not names:
        return RetrievalDecision(off, (), "no retriever in rotation")
    if asked is off:
        return RetrievalDecision(off, (), "the request turned retrieval off")
    if route is None:
        return RetrievalDecision(off, (), "pinned model")
    structured = request.structured()
    if structured is not None:
        return RetrievalDecision(off, (), structured)
    probability = dict(route.categories)
    domains = []
    for name in names:
        spec = table.get(name)
        assert spec is not None
        served = served_categories(spec)
        domains.append((name, max((probability.get(c, 0.0) for c in served), default=0.0)))
    domains.sort(key=lambda d: -d[1])
    floor = min(settings.also_above, settings.threshold)
    gated = tuple(d for d in domains if d[1] >= floor)[: settings.max_retrievers]
    if not gated or gated[0][1] < settings.threshold:
        best = domains[0]
        return RetrievalDecision(
            off, (), f"no domain at {settings.threshold:g} (best {best[0]} {best[1]:.2f})"
        )
    mode = asked or settings.routes.get(gated[0][0], settings.mode)
    if mode is off:
        return RetrievalDecision(off, (), f"retrieval off for {gated[0][0]}")
    reason = ", ".join(f"{n} {p:.2f}" for n, p in gated) + f" (gate {settings.threshold:g})"
    return RetrievalDecision(mode, gated, reason)


async def retrieve(
    decision: RetrievalDecision, query: str, pool: ExpertPool, k: int
) -> tuple[list[Cited], tuple[str, ...]]:
    """The fused top `k` passages of the decision's retrievers, and the retrievers that
    answered (a failing one is dropped and logged)."""

    async def search(name: str) -> list[Passage]:
        spec = pool.table.get(name)
        with tracing.span("coe.expert_call", {"coe.role": "retriever"}, expert=spec):
            async with pool.lease(name) as expert:
                if not isinstance(expert, RetrieverExpert):
                    raise TypeError(f"{name!r} is not a retriever")
                return await expert.search(query, k)

    found = await asyncio.gather(
        *(search(name) for name, _ in decision.retrievers), return_exceptions=True
    )
    rankings: list[tuple[str, float, list[Passage]]] = []
    for (name, weight), result in zip(decision.retrievers, found, strict=True):
        if isinstance(result, ExpertError):
            pool.record(name, result)
            log.warning("retriever %s failed: %s", name, result.message)
            continue
        if isinstance(result, BaseException):
            raise result
        pool.record(name, None)
        rankings.append((name, weight, result))
    return fuse(rankings, k), tuple(name for name, _, _ in rankings)


def fuse(rankings: Sequence[tuple[str, float, Sequence[Passage]]], k: int) -> list[Cited]:
    """Weighted reciprocal-rank fusion (`experts.retrieval.fusion`): score = sum of weight /
    (60 + rank) (one ranking: its own order)."""
    # imported here: the experts.retrieval package is loaded only once a retriever is used
    from experts.retrieval.fusion import reciprocal_rank_fusion

    passages: dict[tuple[str, str], Passage] = {}
    for name, _, ranking in rankings:
        for passage in ranking:
            passages.setdefault((name, passage.id), passage)
    fused = reciprocal_rank_fusion(
        [[(name, p.id) for p in ranking] for name, _, ranking in rankings],
        weights=[weight for _, weight, _ in rankings],
    )[:k]
    ids = [pid for (_, pid), _ in fused]
    return [
        Cited(name, passages[(name, pid)], f"{name}:{pid}" if ids.count(pid) > 1 else pid, score)
        for (name, pid), score in fused
    ]


def with_context(request: ChatRequest, cited: Sequence[Cited], chars: int) -> ChatRequest:
    """`request` with a leading system message holding the passages (at most `chars` of their
    text in all), asking for citations by id."""
    if not cited:
        return request
    blocks, left = [], chars
    for c in cited:
        title = f"{c.passage.title}. " if c.passage.title else ""
        text = (title + c.passage.text)[: max(left, 0)]
        if not text:
            break
        blocks.append(f"[{c.cite}] {text}")
        left -= len(text)
    system = Message("system", _INSTRUCTION.format(example=cited[0].cite) + "\n\n".join(blocks))
    return replace(request, messages=(system, *request.messages))


def answer_text(cited: Sequence[Cited]) -> str:
    """Mode `passages`: the assistant message listing the passages."""
    return passages_text([(c.retriever, replace(c.passage, id=c.cite)) for c in cited])
