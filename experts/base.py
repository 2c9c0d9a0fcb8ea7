"""The `Expert` protocol: something that answers chat requests (`experts.chat` types).

Lifecycle of an expert::

    expert = build_expert(spec, http=..., local_models=...)  # no I/O; ValueError if misconfigured
    await expert.start()                  # optional warm-up: load weights, discover models
    result = await expert.chat(request)   # or: async for delta in expert.stream(request)
    health = await expert.health()
    await expert.aclose()                 # after in-flight requests finished

`chat()` and `stream()` raise only `experts.errors.ExpertError` subclasses. A `stream()` that
fails before yielding its first delta raises with `before_first_byte=True`, so the gateway may
try the next expert; after that the error goes into the client's stream.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from experts.chat import ChatDelta, ChatRequest, ChatResult
from registry.spec import ExpertSpec

__all__ = ["Expert", "ExpertHealth"]


@dataclass(frozen=True, slots=True)
class ExpertHealth:
    """What `health()` found: up or not, and optional load figures (vLLM `/metrics`)."""

    healthy: bool
    detail: str = ""
    models: tuple[str, ...] = ()
    running_requests: float | None = None
    waiting_requests: float | None = None


@runtime_checkable
class Expert(Protocol):
    """Something that answers chat requests."""

    @property
    def spec(self) -> ExpertSpec: ...

    async def start(self) -> None:
        """Warm up (load weights, discover models). Idempotent. May be a no-op."""

    async def chat(self, request: ChatRequest) -> ChatResult: ...

    def stream(self, request: ChatRequest) -> AsyncGenerator[ChatDelta, None]:
        """Yield deltas; closing the generator early (`aclose()`) cancels the upstream request."""

    async def health(self) -> ExpertHealth: ...

    async def aclose(self) -> None: ...
