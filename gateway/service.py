"""`ChatService`: the one owner of a chat request, from routing to the recorded outcome.

    answer = await service.answer(request)     # Answer (whole) or AnswerStream (first delta in)

1. Plan: a pinned model (`model: "<expert>"`) or the router's ordered experts, minus those whose
   circuit breaker is open, cut to 1 + `failover` candidates. An affinity (`gateway/affinity.py`:
   a tool result goes back to the expert that issued the call; optionally a conversation stays
   on its first expert) puts that expert first while it is in rotation.
2. Call: try the candidates in order. A failure *before the first byte* (connect error, 5xx,
   timeout, start-up failure) moves on to the next candidate; the upstream's rejection of the
   request itself (4xx) does not. A stream is opened by pulling its first delta, so that
   failover is still possible and the response headers can name the expert that answered.
3. Record: metrics and the circuit breaker see every attempt. A whole answer is recorded when
   it returns; an `AnswerStream` records itself when it ends: completed (200), failed after the
   first byte (502, the error is re-raised to the caller for the in-stream error event) or
   closed early by the caller, e.g. on client disconnect (499; closing cancels the upstream).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import anyio.to_thread

from experts.chat import ChatDelta, ChatRequest, ChatResult, Message, Usage
from experts.errors import ExpertError, UpstreamRejected
from experts.retriever import passage_json
from gateway import tracing
from gateway.affinity import Affinity, tool_call_ids
from gateway.answers import Answer, AnswerMeta, AnswerStream, whole_as_stream
from gateway.errors import Forbidden, ModelNotFound, NoHealthyExpert, error_from_exception
from gateway.fusion.base import FusionKind, FusionPlan
from gateway.fusion.plan import Decision as FusionDecision
from gateway.fusion.plan import fusion_plan
from gateway.fusion.runner import run_fusion
from gateway.keys import Grant
from gateway.logs import REQUEST_ID
from gateway.metrics import Metrics
from gateway.pool import ExpertPool
from gateway.retrieval import (
    RetrievalDecision,
    answer_text,
    retrieval_decision,
    retrieve,
    retriever_names,
    with_context,
)
from gateway.retrieval_mode import RetrievalMode
from gateway.settings import FusionSettings, RetrievalSettings
from routers.base import ExpertTable, RouteDecision, Router

__all__ = ["ChatService", "RoutePreview"]

log = logging.getLogger("coe.chat")

PINNED = "pinned"
NO_FUSION = "not configured"
NOT_GATED = RetrievalDecision(RetrievalMode.OFF, (), "no retriever in rotation")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RoutePreview:
    """A routing decision, the experts a chat request would call now, and its fusion plan
    (None: one expert; `fusion_reason` says why) (`/v1/route`)."""

    decision: RouteDecision
    selected: tuple[str, ...]
    fusion: FusionPlan | None = None
    fusion_reason: str = NO_FUSION
    retrieval: RetrievalDecision = NOT_GATED


@dataclass(frozen=True, slots=True)
class _Plan:
    request_id: str
    candidates: tuple[str, ...]
    category: str
    decision: RouteDecision | None
    route_ms: float
    ranked: tuple[str, ...]
    """Every expert in rotation, best first (the candidates of a fusion)."""
    table: ExpertTable
    affinity: str | None = None
    """Why `candidates[0]` was put first, if an affinity did."""
    single_reason: str = NO_FUSION
    retrieval: RetrievalDecision = NOT_GATED
    retrieved: tuple[tuple[str, ...], tuple[dict[str, Any], ...]] = ((), ())
    """The retrievers that answered and the passages they gave."""

    def meta(self, expert: str) -> AnswerMeta:
        first = self.candidates[0]
        return AnswerMeta(
            retrievers=self.retrieved[0],
            retrieval=self.retrieval.mode.value,
            retrieval_reason=self.retrieval.reason,
            passages=self.retrieved[1],
            request_id=self.request_id,
            expert=expert,
            category=self.category,
            route_ms=self.route_ms,
            fallback=self.decision is not None and self.decision.fallback,
            failover_from=first if expert != first else None,
            affinity=self.affinity if expert == first else None,
            fusion_reason=self.single_reason,
        )


class ChatService:
    def __init__(
        self,
        pool: ExpertPool,
        router: Router,
        metrics: Metrics,
        affinity: Affinity,
        *,
        failover: int,
        fusion: FusionSettings | None = None,
        retrieval: RetrievalSettings | None = None,
    ) -> None:
        self.pool = pool
        self.router = router
        self.metrics = metrics
        self.affinity = affinity
        self.failover = failover
        self.fusion = fusion or FusionSettings()
        self.retrieval = retrieval or RetrievalSettings()

    async def answer(
        self,
        request: ChatRequest,
        *,
        grant: Grant | None = None,
        disconnected: Callable[[], Awaitable[bool]] | None = None,
    ) -> Answer | AnswerStream:
        """Route `request`, call its expert(s) with failover or fusion, and answer (module
        doc). `grant`: what the caller's API key may use (None: anything). `disconnected` tells
        whether the client went away (a fusion stops waiting)."""
        _check_fusion_grant(request, grant)
        plan = _granted(await self._plan(request, grant), grant, self.fusion)
        request = replace(request, request_id=plan.request_id)
        if request.routed:
            request, plan, retrieved = await self._retrieve(request, plan)
            if retrieved is not None:
                return retrieved
        fusion = fusion_plan(request, plan.decision, plan.ranked, plan.table, self.fusion)
        if grant is not None and not grant.fusion:
            fusion = FusionDecision(None, "fusion not permitted for this API key")
        if fusion.plan is not None:
            return await run_fusion(
                request,
                fusion.plan,
                plan.meta(plan.candidates[0]),
                pool=self.pool,
                embedder=self.router.embedder,
                metrics=self.metrics,
                observe=functools.partial(self._called, plan),
                disconnected=disconnected,
            )
        plan = replace(plan, single_reason=fusion.reason)
        if request.stream:
            return await self._open_stream(request, plan)
        return await self._complete(request, plan)

    async def _retrieve(
        self, request: ChatRequest, plan: _Plan
    ) -> tuple[ChatRequest, _Plan, Answer | AnswerStream | None]:
        """Gate to retrieval (`gateway/retrieval.py`): the passages themselves answer (mode
        `passages`), or go into the request for the LLMs (`context`); LLMs only otherwise."""
        decision = retrieval_decision(
            request, plan.decision, plan.table, plan.ranked, self.retrieval
        )
        retrievers = set(retriever_names(plan.table))
        llms = tuple(name for name in plan.ranked if name not in retrievers)
        if decision.retrievers:
            query = request.routing_query()
            cited, consulted, note = await retrieve(decision, query, self.pool, self.retrieval)
            if note:
                decision = replace(decision, reason=f"{decision.reason}; {note}")
            if not consulted:
                decision = replace(decision, mode=RetrievalMode.OFF, reason="retrievers failed")
            passages = tuple(passage_json(c.passage, c.retriever) | {"cite": c.cite} for c in cited)
            plan = replace(plan, retrieval=decision, retrieved=(consulted, passages))
            if consulted and decision.mode is RetrievalMode.PASSAGES:
                result = ChatResult(answer_text(cited), model=consulted[0], usage=Usage())
                meta = replace(plan.meta(consulted[0]), experts=consulted)
                whole = Answer(meta, result)
                return request, plan, whole_as_stream(meta, result) if request.stream else whole
            if consulted:
                request = with_context(request, cited, self.retrieval.context_chars)
        else:
            plan = replace(plan, retrieval=decision)
        if len(llms) == len(plan.ranked):
            return request, plan, None
        if not llms:
            raise NoHealthyExpert("no LLM expert in rotation to answer this request")
        return request, replace(plan, candidates=llms[: 1 + self.failover], ranked=llms), None

    async def preview(self, query: str, grant: Grant | None = None) -> RoutePreview:
        """The decision for `query`, the healthy experts it would call and the fusion plan,
        calling nobody; `grant` limits them to what the caller's key may use."""
        decision = await self.decide(query)
        table = self.pool.table
        if grant is not None:
            table = ExpertTable(table.revision, grant.allowed(table.experts))
        ranked = self.pool.available([e.name for e in decision.experts if table.get(e.name)])
        request = ChatRequest((Message("user", query),))
        retrieval = retrieval_decision(request, decision, table, ranked, self.retrieval)
        retrievers = set(retriever_names(table))
        if retrieval.mode is not RetrievalMode.PASSAGES:
            ranked = [name for name in ranked if name not in retrievers]
        if retrieval.retrievers and retrieval.mode is RetrievalMode.PASSAGES:
            selected = tuple(name for name, _ in retrieval.retrievers)
            return RoutePreview(decision, selected, None, "retrieval: passages", retrieval)
        fusion = fusion_plan(request, decision, ranked, table, self.fusion)
        if grant is not None and not grant.fusion:
            fusion = FusionDecision(None, "fusion not permitted for this API key")
        if fusion.plan is not None:
            return RoutePreview(
                decision, fusion.plan.experts, fusion.plan, fusion.reason, retrieval
            )
        return RoutePreview(
            decision, tuple(ranked[: max(1, decision.selected)]), None, fusion.reason, retrieval
        )

    async def decide(self, query: str) -> RouteDecision:
        """Run the router off the event loop on the current registry table."""
        table = await self.pool.sync()
        with tracing.span("coe.route", {"coe.router": self.router.name}) as span:
            decision = await anyio.to_thread.run_sync(self.router.route, query, table)
            span.set_route(decision)
        self.metrics.route_latency.labels(self.router.name).observe(decision.latency_ms / 1000)
        return decision

    async def _plan(self, request: ChatRequest, grant: Grant | None = None) -> _Plan:
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        REQUEST_ID.set(request_id)  # JSON log lines of this request carry it (gateway/logs.py)
        if not request.routed:
            await self.pool.sync()
            if not self.pool.has(request.model):
                raise ModelNotFound(
                    f"The model '{request.model}' does not exist; "
                    "use 'auto' or one of GET /v1/models.",
                    param="model",
                )
            if grant is not None and not grant.allows(self.pool.table.get(request.model)):
                raise Forbidden(
                    f"API key {grant.key!r} may not use the model {request.model!r}",
                    param="model",
                    code="model_not_allowed",
                )
            candidates = self.pool.available([request.model])
            if not candidates:
                raise NoHealthyExpert(f"expert {request.model!r} is out of rotation after failures")
            pinned = tuple(candidates)
            return _Plan(
                request_id, pinned, PINNED, None, 0.0, ranked=pinned, table=self.pool.table
            )
        decision = await self.decide(request.routing_query())
        if decision.fallback:
            self.metrics.fallbacks.labels("router_abstained").inc()
        ranked = [e.name for e in decision.experts]
        preferred = await self.affinity.preferred(request)
        why = None
        if preferred is not None and self.pool.available([preferred[0]]):
            ranked = [preferred[0], *(name for name in ranked if name != preferred[0])]
            why = preferred[1]
        if grant is not None and not grant.unrestricted:
            ranked = [n for n in ranked if grant.allows(self.pool.table.get(n))]
            if not ranked:
                raise Forbidden(
                    f"API key {grant.key!r} may use no expert for this request"
                    + (f" (category {decision.category!r})" if decision.category else ""),
                    code="model_not_allowed",
                )
        candidates = self.pool.available(ranked)
        if not candidates:
            raise NoHealthyExpert(
                "no healthy expert can take this request"
                + (f" (category {decision.category!r})" if decision.category else "")
            )
        return _Plan(
            request_id,
            tuple(candidates[: 1 + self.failover]),
            decision.category or "none",
            decision,
            decision.latency_ms,
            tuple(candidates),
            self.pool.table,
            why,
        )

    async def _complete(self, request: ChatRequest, plan: _Plan) -> Answer:
        """A whole answer from the first candidate that gives one."""

        async def attempt(name: str, started: float, call: tracing.Span) -> Answer:
            async with self.pool.lease(name) as expert:
                result = await expert.chat(request)
            self.pool.record(name, None)
            self._observe(name, plan, 200, started, stream=False)
            if request.routed:
                await self.affinity.record(request, name, tool_call_ids(result.tool_calls))
            return Answer(plan.meta(name), result)

        return await self._first_success(plan, attempt, stream=False)

    async def _open_stream(self, request: ChatRequest, plan: _Plan) -> AnswerStream:
        """A stream on the first candidate that yields a first delta."""

        async def attempt(name: str, started: float, call: tracing.Span) -> AnswerStream:
            stack = contextlib.AsyncExitStack()
            try:
                expert = await stack.enter_async_context(self.pool.lease(name))
                rest = await stack.enter_async_context(contextlib.aclosing(expert.stream(request)))
                first = await anext(rest, ChatDelta(finish_reason="stop"))
            except BaseException:
                await stack.aclose()
                raise
            self.metrics.ttft.labels(name, plan.category).observe(time.perf_counter() - started)
            call.keep_open()  # the expert-call span ends with the stream

            async def on_end(error: BaseException | None, tool_calls: list[str]) -> None:
                call.end(error)
                self._stream_ended(name, plan, started, error)
                if error is None and request.routed:
                    await self.affinity.record(request, name, tool_calls)

            return AnswerStream(plan.meta(name), first, rest, stack, on_end)

        return await self._first_success(plan, attempt, stream=True)

    async def _first_success(
        self,
        plan: _Plan,
        attempt: Callable[[str, float, tracing.Span], Awaitable[T]],
        *,
        stream: bool,
    ) -> T:
        """`attempt(name, started, span)` on each candidate in turn (one `coe.expert_call` span
        each) until one succeeds. A failure before the first byte moves on; the upstream's
        rejection of the request (4xx) is final."""
        last: ExpertError | None = None
        for index, name in enumerate(plan.candidates):
            if index:
                self.metrics.fallbacks.labels("expert_failed").inc()
            started = time.perf_counter()
            role = {"coe.role": "failover" if index else "primary"}
            try:
                with tracing.span("coe.expert_call", role, expert=plan.table.get(name)) as call:
                    return await attempt(name, started, call)
            except UpstreamRejected as exc:
                self._observe(name, plan, exc.status, started, stream=stream)
                raise
            except ExpertError as exc:
                last = self._failed(name, plan, exc, started, stream=stream)
        assert last is not None
        raise last

    def _called(self, plan: _Plan, name: str, error: ExpertError | None, started: float) -> None:
        """One call of a fusion: the breaker and the metrics see it like any other."""
        self.pool.record(name, error)
        status = 200 if error is None else _status_of(error)
        self._observe(name, plan, status, started, stream=False)

    def _stream_ended(
        self, name: str, plan: _Plan, started: float, error: BaseException | None
    ) -> None:
        """Record a stream's outcome once it ended (completed, failed or closed early)."""
        if isinstance(error, ExpertError):
            log.warning(
                "request %s: stream from %s failed after first byte: %s",
                plan.request_id,
                name,
                error.message,
            )
            self.pool.record(name, error)
            status = 502
        else:
            self.pool.record(name, None)
            status = 200 if error is None else 499
        self._observe(name, plan, status, started, stream=True)

    def _failed(
        self, name: str, plan: _Plan, exc: ExpertError, started: float, *, stream: bool
    ) -> ExpertError:
        log.warning(
            "request %s: expert %s failed before first byte: %s", plan.request_id, name, exc.message
        )
        self.pool.record(name, exc)
        self._observe(name, plan, _status_of(exc), started, stream=stream)
        return exc

    def _observe(
        self, name: str, plan: _Plan, status: int, started: float, *, stream: bool
    ) -> None:
        flag = "true" if stream else "false"
        self.metrics.requests.labels(name, plan.category, str(status), flag).inc()
        self.metrics.latency.labels(name, plan.category, flag).observe(
            time.perf_counter() - started
        )


def _status_of(exc: ExpertError) -> int:
    return error_from_exception(exc).status


def _check_fusion_grant(request: ChatRequest, grant: Grant | None) -> None:
    asked = request.fusion.strategy
    if grant is not None and not grant.fusion and asked and asked != FusionKind.NONE.value:
        raise Forbidden(
            f"API key {grant.key!r} may not ask for fusion",
            param="coe.fusion",
            code="fusion_not_allowed",
        )


def _granted(plan: _Plan, grant: Grant | None, fusion: FusionSettings) -> _Plan:
    """The plan's table as the key sees it: its experts (and the configured judge/aggregator,
    which are the operator's, not the caller's choice)."""
    if grant is None or grant.unrestricted:
        return plan
    keep = {fusion.judge, fusion.aggregator}
    experts = tuple(e for e in plan.table.experts if grant.allows(e) or e.name in keep)
    return replace(plan, table=ExpertTable(plan.table.revision, experts))
