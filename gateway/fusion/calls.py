"""`PoolCalls`: how fusion strategies call experts, over the gateway's expert pool.

* `gather(experts, request)`: every expert at once (whole answers, whatever the client asked),
  until the request's fusion deadline; an expert that fails or misses it is dropped, and the
  others answer. When none answers, the last failure is raised (`ExpertTimeout` past the
  deadline). While it waits it asks `disconnected()` every `poll_s`: a client that went away
  cancels every call.
* `call(expert, request)` / `stream(expert, request)`: one expert (a judge, an aggregator).

Every call is reported to `observe(expert, status, started, error)`, which the chat service
turns into metrics and circuit-breaker records, and its usage is added to `usage`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from experts.chat import ChatDelta, ChatRequest, ChatResult, Usage
from experts.errors import ExpertError, ExpertTimeout
from gateway import tracing
from gateway.fusion.base import Candidate
from gateway.pool import ExpertPool
from routers.embedder import Embedder

__all__ = ["ClientGone", "PoolCalls"]

Observe = Callable[[str, ExpertError | None, float], None]
Disconnected = Callable[[], Awaitable[bool]]


class ClientGone(Exception):
    """The client disconnected while the candidates were being gathered."""


@dataclass
class PoolCalls:
    pool: ExpertPool
    embedder: Embedder
    observe: Observe
    deadline_s: float
    disconnected: Disconnected | None = None
    poll_s: float = 0.25
    usage: Usage = field(default_factory=Usage)
    calls: int = 0
    dropped: int = 0
    fastest_s: float | None = None

    async def gather(self, experts: Sequence[str], request: ChatRequest) -> list[Candidate]:
        whole = replace(request, stream=False)
        tasks = [asyncio.create_task(self._candidate(name, whole)) for name in experts]
        try:
            await self._wait(tasks)
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
                    self.dropped += 1
            await asyncio.gather(*tasks, return_exceptions=True)
        answered: list[Candidate] = []
        failure: ExpertError | None = None
        for name, task in zip(experts, tasks, strict=True):
            if task.cancelled():
                failure = ExpertTimeout(f"expert {name!r} missed the fusion deadline", expert=name)
                continue
            error = task.exception()
            if error is None:
                answered.append(task.result())
            elif isinstance(error, ExpertError):
                self.dropped += 1
                failure = error
            else:
                raise error
        if answered:
            return answered
        raise failure or ExpertTimeout("no candidate answered before the fusion deadline")

    async def call(self, expert: str, request: ChatRequest) -> ChatResult:
        whole = replace(request, stream=False)
        return (await self._candidate(expert, whole, role="fusion")).result

    async def stream(self, expert: str, request: ChatRequest) -> AsyncIterator[ChatDelta]:
        started = time.perf_counter()
        self.calls += 1
        with self._span(expert, "fusion") as call:
            call.keep_open()  # a generator: current only around each step, ended below
        try:
            async with (
                self.pool.lease(expert) as leased,
                contextlib.aclosing(leased.stream(_counted(request))) as deltas,
            ):
                while True:
                    with tracing.current(call):
                        delta = await anext(deltas, None)
                    if delta is None:
                        break
                    if delta.usage is not None:
                        self._add(delta.usage)
                    yield delta
        except BaseException as exc:
            call.end(exc)
            if isinstance(exc, ExpertError):
                self.observe(expert, exc, started)
            raise
        call.end()
        self.observe(expert, None, started)

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return np.asarray(self.embedder.embed(list(texts)), dtype=np.float32)

    async def _candidate(
        self, expert: str, request: ChatRequest, role: str = "candidate"
    ) -> Candidate:
        started = time.perf_counter()
        self.calls += 1
        try:
            with self._span(expert, role):
                async with self.pool.lease(expert) as leased:
                    result = await leased.chat(request)
        except ExpertError as exc:
            self.observe(expert, exc, started)
            raise
        seconds = time.perf_counter() - started
        self.observe(expert, None, started)
        if result.usage is not None:
            self._add(result.usage)
        self.fastest_s = seconds if self.fastest_s is None else min(self.fastest_s, seconds)
        return Candidate(expert, result, seconds)

    def _span(self, expert: str, role: str) -> contextlib.AbstractContextManager[tracing.Span]:
        """The `coe.expert_call` span of one call (gateway/tracing.py)."""
        spec = self.pool.table.get(expert)
        return tracing.span("coe.expert_call", {"coe.role": role}, expert=spec)

    async def _wait(self, tasks: list[asyncio.Task[Candidate]]) -> None:
        """Until every task is done or the deadline passed; ClientGone when the client left."""
        deadline = time.monotonic() + self.deadline_s
        pending = set(tasks)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            step = left if self.disconnected is None else min(left, self.poll_s)
            _, pending = await asyncio.wait(pending, timeout=step)
            if pending and self.disconnected is not None and await self.disconnected():
                raise ClientGone("the client disconnected while the candidates were answering")

    def _add(self, usage: Usage) -> None:
        self.usage = Usage(
            self.usage.prompt_tokens + usage.prompt_tokens,
            self.usage.completion_tokens + usage.completion_tokens,
        )


def _counted(request: ChatRequest) -> ChatRequest:
    """The streamed request with usage asked for, whatever the client asked: its tokens count
    towards the fused answer's usage."""
    extra = {**request.extra, "stream_options": {"include_usage": True}}
    return replace(request, stream=True, include_usage=True, extra=extra)
