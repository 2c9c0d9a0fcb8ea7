"""`ChatService`: route one chat request, call the chosen expert, fail over before the first byte.

The HTTP layer (gateway/routes/chat.py) only parses and renders; this is where the decisions are:

1. `plan()`: a pinned model (`model: "<expert>"`) or the router's ordered experts, minus those
   whose circuit breaker is open, cut to 1 + `failover` candidates.
2. `complete()` / `open_stream()`: try the candidates in order. A failure *before the first byte*
   (connect error, 5xx, timeout, start-up failure) moves on to the next candidate; the upstream's
   rejection of the request itself (4xx) does not. A stream is opened by pulling its first delta,
   so that failover is still possible and the response headers name the expert that answered.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio.to_thread

from experts.base import ChatDelta, ChatRequest, ChatResult
from experts.errors import ExpertError, UpstreamRejected
from gateway.errors import ModelNotFound, NoHealthyExpert, error_from_exception
from gateway.metrics import Metrics
from gateway.pool import ExpertPool
from gateway.protocol import AUTO_MODEL, ChatCompletionRequest
from routers.base import RouteDecision, Router

__all__ = ["ChatService", "OpenStream", "Plan"]

log = logging.getLogger("coe.chat")

PINNED = "pinned"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Plan:
    """Which experts to try, in order, for one request."""

    request_id: str
    candidates: tuple[str, ...]
    category: str
    decision: RouteDecision | None
    route_ms: float


@dataclass(slots=True)
class OpenStream:
    """A stream whose first delta has arrived. `aclose()` releases the expert."""

    expert: str
    first: ChatDelta
    rest: AsyncIterator[ChatDelta]
    stack: contextlib.AsyncExitStack
    started: float

    async def aclose(self) -> None:
        await self.stack.aclose()


class ChatService:
    def __init__(
        self, pool: ExpertPool, router: Router, metrics: Metrics, *, failover: int
    ) -> None:
        self.pool = pool
        self.router = router
        self.metrics = metrics
        self.failover = failover

    async def decide(self, query: str) -> RouteDecision:
        """Run the router off the event loop on the current registry table."""
        table = await self.pool.sync()
        decision = await anyio.to_thread.run_sync(self.router.route, query, table)
        self.metrics.route_latency.labels(self.router.name).observe(decision.latency_ms / 1000)
        return decision

    async def plan(self, body: ChatCompletionRequest) -> Plan:
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        if body.model != AUTO_MODEL:
            await self.pool.sync()
            if not self.pool.has(body.model):
                raise ModelNotFound(
                    f"The model '{body.model}' does not exist; "
                    "use 'auto' or one of GET /v1/models.",
                    param="model",
                )
            candidates = self.pool.available([body.model])
            if not candidates:
                raise NoHealthyExpert(f"expert {body.model!r} is out of rotation after failures")
            return Plan(request_id, tuple(candidates), PINNED, None, 0.0)
        decision = await self.decide(body.routing_query())
        if decision.fallback:
            self.metrics.fallbacks.labels("router_abstained").inc()
        candidates = self.pool.available([e.name for e in decision.experts])
        if not candidates:
            raise NoHealthyExpert(
                "no healthy expert can take this request"
                + (f" (category {decision.category!r})" if decision.category else "")
            )
        return Plan(
            request_id,
            tuple(candidates[: 1 + self.failover]),
            decision.category or "none",
            decision,
            decision.latency_ms,
        )

    @staticmethod
    def expert_request(body: ChatCompletionRequest, plan: Plan) -> ChatRequest:
        messages = tuple(m.model_dump(exclude_none=True) for m in body.messages)
        return ChatRequest(
            messages=messages, params=body.expert_params(), request_id=plan.request_id
        )

    async def complete(self, body: ChatCompletionRequest, plan: Plan) -> tuple[str, ChatResult]:
        """A whole answer from the first candidate that gives one."""
        request = self.expert_request(body, plan)

        async def attempt(name: str, started: float) -> tuple[str, ChatResult]:
            async with self.pool.lease(name) as expert:
                result = await expert.chat(request)
            self.pool.record(name, None)
            self._observe(name, plan, 200, started, stream=False)
            return name, result

        return await self._first_success(plan, attempt, stream=False)

    async def open_stream(self, body: ChatCompletionRequest, plan: Plan) -> OpenStream:
        """Open a stream on the first candidate that yields a first delta."""
        request = self.expert_request(body, plan)

        async def attempt(name: str, started: float) -> OpenStream:
            stack = contextlib.AsyncExitStack()
            try:
                expert = await stack.enter_async_context(self.pool.lease(name))
                rest = await stack.enter_async_context(contextlib.aclosing(expert.stream(request)))
                first = await anext(rest, ChatDelta(finish_reason="stop"))
            except BaseException:
                await stack.aclose()
                raise
            self.metrics.ttft.labels(name, plan.category).observe(time.perf_counter() - started)
            return OpenStream(name, first, rest, stack, started)

        return await self._first_success(plan, attempt, stream=True)

    async def _first_success(
        self, plan: Plan, attempt: Callable[[str, float], Awaitable[T]], *, stream: bool
    ) -> T:
        """`attempt(name, started)` on each candidate in turn until one succeeds. A failure
        before the first byte moves on; the upstream's rejection of the request (4xx) is final."""
        last: ExpertError | None = None
        for index, name in enumerate(plan.candidates):
            if index:
                self.metrics.fallbacks.labels("expert_failed").inc()
            started = time.perf_counter()
            try:
                return await attempt(name, started)
            except UpstreamRejected as exc:
                self._observe(name, plan, exc.status, started, stream=stream)
                raise
            except ExpertError as exc:
                last = self._failed(name, plan, exc, started, stream=stream)
        assert last is not None
        raise last

    def finish_stream(self, stream: OpenStream, plan: Plan, error: BaseException | None) -> None:
        """Record a stream's outcome once it ended (completed, failed or cancelled)."""
        self.pool.record(stream.expert, error if isinstance(error, ExpertError) else None)
        status = 200 if error is None else (499 if not isinstance(error, ExpertError) else 502)
        self._observe(stream.expert, plan, status, stream.started, stream=True)

    def _failed(
        self, name: str, plan: Plan, exc: ExpertError, started: float, *, stream: bool
    ) -> ExpertError:
        log.warning(
            "request %s: expert %s failed before first byte: %s", plan.request_id, name, exc.message
        )
        self.pool.record(name, exc)
        self._observe(name, plan, _status_of(exc), started, stream=stream)
        return exc

    def _observe(self, name: str, plan: Plan, status: int, started: float, *, stream: bool) -> None:
        flag = "true" if stream else "false"
        self.metrics.requests.labels(name, plan.category, str(status), flag).inc()
        self.metrics.latency.labels(name, plan.category, flag).observe(
            time.perf_counter() - started
        )


def _status_of(exc: ExpertError) -> int:
    return error_from_exception(exc).status
