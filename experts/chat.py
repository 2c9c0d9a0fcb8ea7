"""The chat domain: what a request to an expert holds and what an expert answers.

These are not the OpenAI wire models (`gateway.protocol`): the gateway validates a request once,
at the HTTP edge, and builds a `ChatRequest` whose fields are already valid. Everything the
gateway understands is typed (messages, sampling); everything else the client sent (tools,
response_format, vendor extras such as vLLM's `top_k`) is carried in `extra` as it came, and
forwarded by the experts that speak OpenAI's API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "AUTO_MODEL",
    "ROUTING_QUERY_CHARS",
    "ChatDelta",
    "ChatRequest",
    "ChatResult",
    "FusionRequest",
    "Message",
    "Role",
    "Sampling",
    "Usage",
    "with_system_prompt",
]

AUTO_MODEL = "auto"
"""The model id that asks the gateway to route."""

ROUTING_QUERY_CHARS = 2000
"""The router reads at most this much of the query (MiniLM itself reads its first 256 word
pieces, about 1,000 characters; TF-IDF features of a trained router see the rest)."""

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message. `content` is a string, OpenAI content parts (text, image, ...; kept
    as sent), or None (an assistant message that only calls tools). `fields` holds the
    message's other keys as sent (`name`, `tool_calls`, `tool_call_id`, ...)."""

    role: Role
    content: str | tuple[Mapping[str, Any], ...] | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        """The text a router or a text-only model reads: the string content, or the text of
        the `text` parts joined by newlines (other parts carry no text)."""
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "\n".join(
            str(part["text"])
            for part in self.content
            if part.get("type") == "text" and isinstance(part.get("text"), str)
        )

    def to_wire(self) -> dict[str, Any]:
        """The OpenAI message object, as it came in."""
        wire: dict[str, Any] = {"role": self.role, **self.fields}
        if self.content is not None:
            wire["content"] = (
                self.content if isinstance(self.content, str) else [dict(p) for p in self.content]
            )
        return wire


@dataclass(frozen=True, slots=True)
class Sampling:
    """The OpenAI sampling fields the gateway and its in-process experts understand. None (or
    an empty `stop`) means the client did not set it."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None

    @property
    def token_limit(self) -> int | None:
        """How many tokens the answer may have: `max_completion_tokens` (OpenAI's current
        name), else `max_tokens`, as vLLM reads them."""
        return self.max_completion_tokens or self.max_tokens

    def to_wire(self) -> dict[str, Any]:
        """The fields the client set, as OpenAI request fields."""
        wire = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "max_completion_tokens": self.max_completion_tokens,
            "stop": list(self.stop) if self.stop else None,
            "seed": self.seed,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "logprobs": self.logprobs,
            "top_logprobs": self.top_logprobs,
        }
        return {k: v for k, v in wire.items() if v is not None}


@dataclass(frozen=True, slots=True)
class FusionRequest:
    """The client's fusion options (the `coe` extension object); None: the gateway's config."""

    strategy: str | None = None
    k: int | None = None
    experts: tuple[str, ...] = ()
    deadline_s: float | None = None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat request, validated. `model` is `auto` (route) or an expert's name (pinned);
    `extra` holds every other field the client sent, to be passed through unchanged."""

    messages: tuple[Message, ...]
    sampling: Sampling = Sampling()
    model: str = AUTO_MODEL
    stream: bool = False
    include_usage: bool = False
    """Streaming: end the stream with a usage chunk (`stream_options.include_usage`)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    request_id: str = ""
    conversation: str | None = None
    """The client's name for the conversation (header `x-coe-conversation`), if it gave one."""
    fusion: FusionRequest = FusionRequest()
    retrieval: str | None = None
    """The client's retrieval mode (`coe.retrieval`: passages | context | off); None: config."""

    @property
    def routed(self) -> bool:
        return self.model == AUTO_MODEL

    def structured(self) -> str | None:
        """The field asking for more than text, if any: `tools` (unless `tool_choice` is
        "none"), or a `response_format` other than text. Such a request is answered by one
        expert that can honour it, never fused as text."""
        if self.extra.get("tools") and self.extra.get("tool_choice") != "none":
            return "tools"
        response_format = self.extra.get("response_format")
        if isinstance(response_format, Mapping) and response_format.get("type") not in (
            None,
            "text",
        ):
            return "response_format"
        return None

    def routing_query(self) -> str:
        """The text the router classifies: the user's intent, i.e. the last user message (else
        the last message), its first `ROUTING_QUERY_CHARS` characters. Never a tool result or
        the system prompt, whatever their length."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text()[:ROUTING_QUERY_CHARS]
        return self.messages[-1].text()[:ROUTING_QUERY_CHARS] if self.messages else ""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as OpenAI reports them; `details` holds every other usage field as the
    expert sent it (`prompt_tokens_details`, `completion_tokens_details`, ...)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class ChatResult:
    """A complete answer (one choice).

    The gateway reads `content`, `finish_reason` and `usage`; what else the expert answered is
    carried as it came, to be returned unchanged: `message` holds the message's other fields
    (`tool_calls`, `function_call`, `refusal`, vLLM's `reasoning_content`, ...), `choice` the
    choice's (`logprobs`, vLLM's `stop_reason`, ...), `response` the response's top-level ones
    (`system_fingerprint`, ...). `content` is None when the expert answered none (a tool call).
    """

    content: str | None
    model: str
    finish_reason: str | None = "stop"
    usage: Usage | None = None
    message: Mapping[str, Any] = field(default_factory=dict)
    choice: Mapping[str, Any] = field(default_factory=dict)
    response: Mapping[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.content or ""

    @property
    def tool_calls(self) -> tuple[Mapping[str, Any], ...]:
        """The tool calls of the answer (OpenAI's `message.tool_calls`), if any."""
        calls = self.message.get("tool_calls")
        return tuple(c for c in calls if isinstance(c, Mapping)) if isinstance(calls, list) else ()


@dataclass(frozen=True, slots=True)
class ChatDelta:
    """One piece of a streamed answer (one chunk's choice). The last delta carries
    `finish_reason`, and usage may come after it. `delta` carries the delta's other fields as
    sent (`tool_calls` fragments with their `index`, `refusal`, `reasoning_content`, ...),
    `choice` the choice's (`logprobs`, `stop_reason`, ...)."""

    content: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    delta: Mapping[str, Any] = field(default_factory=dict)
    choice: Mapping[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """Nothing to pass on (a keep-alive or an empty role chunk)."""
        return not (self.content or self.finish_reason or self.usage or self.delta or self.choice)


def with_system_prompt(
    messages: tuple[Message, ...], system_prompt: str | None
) -> tuple[Message, ...]:
    """Prepend the expert's system prompt unless the request already has a system message."""
    if not system_prompt or any(m.role == "system" for m in messages):
        return messages
    return (Message("system", system_prompt), *messages)
