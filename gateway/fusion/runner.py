"""`run_fusion`: answer a request by a fusion plan, as `ChatService` does for one expert.

The strategy gathers whole answers (`PoolCalls`), so a fused stream starts once they are in:
`vote`, `consensus`, `judge` and `cascade` then stream the chosen answer, `aggregate` streams
the aggregator's tokens. `usage` sums every call made for the request. Metrics: fused requests
by strategy, candidates called and dropped, and the latency fusion added over the fastest
candidate.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import replace

from experts.chat import ChatDelta, ChatRequest
from experts.errors import ExpertError
from gateway.answers import Answer, AnswerMeta, AnswerStream, whole_as_stream
from gateway.fusion import STRATEGIES
from gateway.fusion.base import FusionPlan
from gateway.fusion.calls import PoolCalls
from gateway.metrics import Metrics
from gateway.pool import ExpertPool
from routers.embedder import Embedder

__all__ = ["run_fusion"]

Observe = Callable[[str, ExpertError | None, float], None]


async def run_fusion(
    request: ChatRequest,
    plan: FusionPlan,
    meta: AnswerMeta,
    *,
    pool: ExpertPool,
    embedder: Embedder,
    metrics: Metrics,
    observe: Observe,
    disconnected: Callable[[], Awaitable[bool]] | None,
) -> Answer | AnswerStream:
    """Fuse (module docstring); the ExpertError of the last failure when no candidate answered."""
    calls = PoolCalls(pool, embedder, observe, plan.deadline_s, disconnected)
    started = time.perf_counter()
    measure = functools.partial(_measure, metrics, plan, calls, started)
    try:
        fused = await STRATEGIES[plan.strategy].fuse(plan, request, calls)
    except BaseException:
        measure()
        raise
    meta = replace(
        meta,
        expert=fused.by,
        experts=fused.used,
        fusion=fused.strategy.value,
        fusion_reason=fused.reason,
    )
    if fused.stream is not None:  # measured when the aggregator's stream ends
        return await _stream(meta, fused.stream, calls, measure)
    measure()
    assert fused.result is not None, "a fused answer is whole or streamed"
    result = replace(fused.result, usage=calls.usage)
    return whole_as_stream(meta, result) if request.stream else Answer(meta, result)


async def _stream(
    meta: AnswerMeta,
    deltas: AsyncIterator[ChatDelta],
    calls: PoolCalls,
    measure: Callable[[], None],
) -> AnswerStream:
    """The aggregator's stream, opened now (its first delta pulled, so a failure is still an
    HTTP error), with the usage of every call in its usage delta; closing it early cancels
    the aggregator's call."""

    async def with_total() -> AsyncGenerator[ChatDelta, None]:
        try:
            async for delta in deltas:
                yield delta if delta.usage is None else replace(delta, usage=calls.usage)
        finally:
            measure()

    rest = with_total()
    stack = contextlib.AsyncExitStack()
    stack.push_async_callback(rest.aclose)
    try:
        first = await anext(rest, ChatDelta(finish_reason="stop", usage=calls.usage))
    except BaseException:
        await stack.aclose()
        raise
    return AnswerStream(meta, first, rest, stack, _recorded)


async def _recorded(error: BaseException | None, tool_calls: list[str]) -> None:
    """Outcomes were recorded call by call (`PoolCalls`)."""


def _measure(metrics: Metrics, plan: FusionPlan, calls: PoolCalls, started: float) -> None:
    strategy = plan.strategy.value
    metrics.fused.labels(strategy).inc()
    metrics.fusion_candidates.labels(strategy).inc(calls.calls)
    metrics.fusion_dropped.labels(strategy).inc(calls.dropped)
    total = time.perf_counter() - started
    metrics.fusion_added.labels(strategy).observe(max(total - (calls.fastest_s or total), 0.0))
