"""Retrieval-gated answers: search the domain retrievers the router is sure of, then answer with
their passages or with an LLM that has them in context (ExpertRAG's gating: retrieve only when
the query belongs to a retriever's domain).

    decision = retrieval_decision(request, route, table, available, settings)  # gate, candidates
    cited, used, note = await retrieve(decision, query, pool, settings)      # searched, chosen
    request  = with_context(request, cited, chars)                           # mode `context`

Gate: each retriever's domain probability is the router's probability of the category it serves
(by default the category named after it, defined by its pilot texts). When the most probable
domain reaches `retrieval.threshold`, retrieval runs; otherwise the LLMs answer alone (`reason`
says why).

Which domains (`retrieval.choose_by`):

* `similarity` (default; collection selection as in federated search): the `candidates` most
  probable domains are all searched (cheap: they share the query's embedding) and each domain's
  evidence is the mean similarity (query-passage cosine, `Passage.similarity`) of its top `k`
  passages: how well its index answers this query. The domain probabilities become
  softmax(evidence / `SIMILARITY_TEMPERATURE`); the best domain is used, with the next ones at
  `also_above` or more (at most `max_retrievers`). Their passages are merged by similarity
  (`merge_by_similarity`). An index without similarities (lexical) makes it fall back to the
  router's choice among the searched. On classic_ir (bench/retrieval/README.md) this puts the
  right domain first for 93% of queries instead of the router's 90% (hybrid nDCG@10 0.506
  instead of 0.480).
* `router`: the router's domains at `also_above` or more (at most `max_retrievers`) are
  searched, their rankings fused by weighted reciprocal rank (weights: the domain
  probabilities; RouterRetriever's multi-domain setting).

`/v1/route` shows the gate and the domains that would be searched with their router
probabilities; the choice among them needs their searches, so only a chat request makes it
(`x-coe-retrieval-reason` then names the evidence, `x-coe-retrievers` the domains used).
Mode: the request's `coe.retrieval` > `retrieval.routes[<top retriever>]` > `retrieval.mode`.
A retriever that fails is dropped; when all fail, the LLMs answer alone.
"""

from __future__ import annotations

import asyncio
import logging
import math
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

__all__ = [
    "SIMILARITY_TEMPERATURE",
    "Cited",
    "RetrievalDecision",
    "choose",
    "combine",
    "retrieval_decision",
    "retrieve",
    "with_context",
]

log = logging.getLogger("coe.retrieval")
_INSTRUCTION = (
    "Answer the user's question using the passages below when they are relevant. Cite every "
    "passage you use by its id in square brackets, for example [{example}]. If the passages do "
    "not contain the answer, say so and answer from your own knowledge.\n\nPassages:\n"
)
SIMILARITY_TEMPERATURE = 0.05
"""Of the softmax over the searched domains' mean similarities: the router's default
temperature (`RouterConfig`), over the same embedder's cosines. Fixed, not fitted."""
Ranked = tuple[str, float, "Sequence[Passage]"]
"""(retriever, weight, its passages best first)."""


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
    if domains[0][1] < settings.threshold:
        best = domains[0]
        return RetrievalDecision(
            off, (), f"no domain at {settings.threshold:g} (best {best[0]} {best[1]:.2f})"
        )
    if settings.choose_by == "similarity":
        searched = tuple(domains[: settings.candidates])
    else:
        floor = min(settings.also_above, settings.threshold)
        searched = tuple(d for d in domains if d[1] >= floor)[: settings.max_retrievers]
    mode = asked or settings.routes.get(searched[0][0], settings.mode)
    if mode is off:
        return RetrievalDecision(off, (), f"retrieval off for {searched[0][0]}")
    reason = ", ".join(f"{n} {p:.2f}" for n, p in searched) + f" (gate {settings.threshold:g})"
    return RetrievalDecision(mode, searched, reason)


async def retrieve(
    decision: RetrievalDecision, query: str, pool: ExpertPool, settings: RetrievalSettings
) -> tuple[list[Cited], tuple[str, ...], str]:
    """The top `settings.k` passages of the decision's retrievers, chosen among them and
    combined (`choose`, `combine`); the retrievers used, best first; and what chose them ("" for
    the router). A failing retriever is dropped and logged."""

    async def search(name: str) -> list[Passage]:
        spec = pool.table.get(name)
        with tracing.span("coe.expert_call", {"coe.role": "retriever"}, expert=spec):
            async with pool.lease(name) as expert:
                if not isinstance(expert, RetrieverExpert):
                    raise TypeError(f"{name!r} is not a retriever")
                return await expert.search(query, settings.k)

    found = await asyncio.gather(
        *(search(name) for name, _ in decision.retrievers), return_exceptions=True
    )
    rankings: list[Ranked] = []
    for (name, weight), result in zip(decision.retrievers, found, strict=True):
        if isinstance(result, ExpertError):
            pool.record(name, result)
            log.warning("retriever %s failed: %s", name, result.message)
            continue
        if isinstance(result, BaseException):
            raise result
        pool.record(name, None)
        rankings.append((name, weight, result))
    chosen, note = choose(rankings, settings)
    return combine(chosen, settings.k, settings), tuple(name for name, _, _ in chosen), note


def choose(rankings: Sequence[Ranked], settings: RetrievalSettings) -> tuple[list[Ranked], str]:
    """The searched domains to use, best first, weighted (module docstring), and a note of the
    evidence ("" when the router's probabilities chose)."""
    found = [r for r in rankings if r[2]]
    comparable = all(p.similarity is not None for _, _, ranking in found for p in ranking)
    if settings.choose_by == "router" or not found or not comparable:
        floor = min(settings.also_above, settings.threshold)
        ranked = sorted(rankings, key=lambda r: -r[1])
        return [r for r in ranked if r[1] >= floor][: settings.max_retrievers], ""
    evidence = [
        sum(p.similarity or 0.0 for p in ranking[: settings.k]) / len(ranking[: settings.k])
        for _, _, ranking in found
    ]
    top = max(evidence)
    exp = [math.exp((e - top) / SIMILARITY_TEMPERATURE) for e in evidence]
    weighted = sorted(
        ((name, x / sum(exp), ranking) for (name, _, ranking), x in zip(found, exp, strict=True)),
        key=lambda r: -r[1],
    )
    kept = [weighted[0], *(r for r in weighted[1:] if r[1] >= settings.also_above)]
    kept = kept[: settings.max_retrievers]
    mean = dict(zip((name for name, _, _ in found), evidence, strict=True))
    note = "chosen by passage similarity: " + ", ".join(
        f"{name} {mean[name]:.3f} ({w:.2f})" for name, w, _ in weighted
    )
    return kept, note


def combine(rankings: Sequence[Ranked], k: int, settings: RetrievalSettings) -> list[Cited]:
    """The top `k` of `rankings`: with `choose_by: similarity` and a similarity on every
    passage, merged by similarity (`merge_by_similarity`); else by weighted reciprocal rank
    (`fuse`, the router's rule)."""
    similar = all(p.similarity is not None for _, _, ranking in rankings for p in ranking)
    if settings.choose_by == "similarity" and similar:
        return merge_by_similarity(rankings, k)
    return fuse(rankings, k)


def merge_by_similarity(rankings: Sequence[Ranked], k: int) -> list[Cited]:
    """Each domain keeps its own order; its i-th passage scores the domain's i-th highest
    similarity + `SIMILARITY_TEMPERATURE` * ln(weight) (the domain probabilities' softmax undone:
    for dense indexes, a merge by cosine that favours the domains that answer best). Ties: the
    order of `rankings`."""
    scored: list[tuple[float, int, str, Passage]] = []
    for position, (name, weight, ranking) in enumerate(rankings):
        prior = SIMILARITY_TEMPERATURE * math.log(max(weight, 1e-300))
        profile = sorted((p.similarity or 0.0 for p in ranking), reverse=True)
        for passage, similarity in zip(ranking, profile, strict=True):
            scored.append((similarity + prior, position, name, passage))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return _cited([(name, passage, score) for score, _, name, passage in scored[:k]])


def fuse(rankings: Sequence[Ranked], k: int) -> list[Cited]:
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
    return _cited([(name, passages[(name, pid)], score) for (name, pid), score in fused])


def _cited(found: Sequence[tuple[str, Passage, float]]) -> list[Cited]:
    """Cite keys: the passage id, `retriever:id` when two domains share it."""
    ids = [passage.id for _, passage, _ in found]
    return [
        Cited(name, p, f"{name}:{p.id}" if ids.count(p.id) > 1 else p.id, score)
        for name, p, score in found
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
