"""The `Expert` protocol and the domain types it speaks (not the OpenAI wire models).

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

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from registry.spec import ExpertSpec

__all__ = [
    "ChatDelta",
    "ChatRequest",
    "ChatResult",
    "Expert",
    "ExpertHealth",
    "Usage",
    "with_system_prompt",
]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as OpenAI reports them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat request as an expert sees it.

    `messages` are OpenAI chat messages as plain mappings (role, content, ...). `params` holds
    every other OpenAI field the client sent (temperature, max_tokens, stop, top_p, seed, any
    unknown extra), minus `model`, `messages` and `stream`; experts pass through what they
    support and ignore the rest.
    """

    messages: tuple[Mapping[str, Any], ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class ChatResult:
    """A complete answer."""

    content: str
    model: str
    finish_reason: str | None = "stop"
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class ChatDelta:
    """One piece of a streamed answer. The last delta carries `finish_reason` (and usage)."""

    content: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


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


def with_system_prompt(
    messages: tuple[Mapping[str, Any], ...], system_prompt: str | None
) -> tuple[Mapping[str, Any], ...]:
    """Prepend the expert's system prompt unless the request already has a system message."""
    if not system_prompt or any(m.get("role") == "system" for m in messages):
        return messages
    return ({"role": "system", "content": system_prompt}, *messages)
