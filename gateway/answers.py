"""What `ChatService` answers: a whole `Answer`, or an `AnswerStream`, each with its `AnswerMeta`
(the response headers' content). The HTTP layer renders them (gateway/routes/chat.py,
gateway/sse.py); it never sees how they were made.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from experts.chat import ChatDelta, ChatResult, Usage
from gateway.affinity import tool_call_ids

__all__ = ["Answer", "AnswerMeta", "AnswerStream", "whole_as_stream"]


@dataclass(frozen=True, slots=True)
class AnswerMeta:
    """How a request was answered: the response headers' content."""

    request_id: str
    expert: str
    category: str
    """The router's top category, `pinned` for a pinned model, `none` without categories."""
    route_ms: float
    fallback: bool = False
    """The router abstained and chose its fallback expert."""
    failover_from: str | None = None
    """The first-choice expert, when it failed before the first byte and another answered."""
    affinity: str | None = None
    """Why the answering expert was chosen before routing (`tool-call`, `conversation`)."""
    fusion: str = "none"
    """The fusion strategy applied; `none` when one expert answered."""
    fusion_reason: str = "not configured"
    """What the fusion did, or why one expert answered (a request with `tools` or a structured
    `response_format` is always answered by one expert, never fused as text)."""
    experts: tuple[str, ...] = ()
    """Every expert whose answer was used, in order (fusion); empty: just `expert`."""
    retrievers: tuple[str, ...] = ()
    """The retrievers consulted (header `x-coe-retrievers`)."""
    retrieval: str = "off"
    retrieval_reason: str = ""
    passages: tuple[dict[str, Any], ...] = ()
    """The passages retrieved, as the `coe.passages` response extension carries them."""

    def extension(self) -> dict[str, Any] | None:
        """The response's `coe` object, when retrieval ran."""
        if not self.retrievers and self.retrieval == "off":
            return None
        return {"retrieval": self.retrieval, "passages": list(self.passages)}

    @property
    def used(self) -> tuple[str, ...]:
        return self.experts or (self.expert,)


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole answer."""

    meta: AnswerMeta
    result: ChatResult


class AnswerStream:
    """A streamed answer whose first delta has arrived. Iterate it for every delta (the first
    included); `aclose()` when done (idempotent). When it ends (completed, failed, or closed
    early by the caller, which cancels the upstream call), it hands `on_end` the error, if any,
    and the ids of the tool calls it carried: the service records the outcome there."""

    def __init__(
        self,
        meta: AnswerMeta,
        first: ChatDelta,
        rest: AsyncIterator[ChatDelta],
        stack: contextlib.AsyncExitStack,
        on_end: Callable[[BaseException | None, list[str]], Awaitable[None]],
    ) -> None:
        self.meta = meta
        self._first: ChatDelta | None = first
        self._rest = rest
        self._stack = stack
        self._on_end = on_end
        self._ended = False
        self._tool_call_ids: list[str] = []
        self.usage: Usage | None = None
        """The usage the stream reported (its last usage delta), once it came."""

    def __aiter__(self) -> AnswerStream:
        return self

    async def __anext__(self) -> ChatDelta:
        if self._first is not None:
            delta, self._first = self._first, None
            return self._seen(delta)
        if self._ended:
            raise StopAsyncIteration
        try:
            return self._seen(await anext(self._rest))
        except StopAsyncIteration:
            await self._end(None)
            raise
        except BaseException as exc:
            await self._end(exc)
            raise

    def _seen(self, delta: ChatDelta) -> ChatDelta:
        if delta.usage is not None:
            self.usage = delta.usage
        calls = delta.delta.get("tool_calls")
        if isinstance(calls, list):
            self._tool_call_ids += tool_call_ids([c for c in calls if isinstance(c, dict)])
        return delta

    async def aclose(self) -> None:
        """Release the expert; before the end this cancels the upstream call (recorded 499)."""
        await self._end(_ClosedEarly())

    async def _end(self, error: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        try:
            await self._stack.aclose()
        finally:
            await self._on_end(error, self._tool_call_ids)


class _ClosedEarly(Exception):
    """The caller closed the stream before its end (client disconnect)."""


async def _nothing(error: BaseException | None, tool_calls: list[str]) -> None:
    """An `on_end` for a stream whose outcome is already recorded."""


def whole_as_stream(meta: AnswerMeta, result: ChatResult) -> AnswerStream:
    """A whole answer as a stream of two deltas: its content (with what else the message and
    the choice carried), then the finish reason and usage."""
    first = ChatDelta(content=result.text, delta=dict(result.message), choice=dict(result.choice))

    async def rest() -> AsyncIterator[ChatDelta]:
        yield ChatDelta(finish_reason=result.finish_reason, usage=result.usage)

    return AnswerStream(meta, first, rest(), contextlib.AsyncExitStack(), _nothing)
