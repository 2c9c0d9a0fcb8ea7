"""What an OpenAI-compatible server sends back, read into the chat domain (`experts.chat`).

    completion(body, fallback_model)   a `chat.completion` body -> ChatResult
    chunk(data)                        one SSE `data:` payload -> ChatDelta | None | StreamError
    SSEDecoder                         server-sent events, line by line
    error_message(payload)             the message of an OpenAI- or vLLM-shaped error body
    model_ids(body)                    the ids of a `/models` listing

The models read what the gateway understands (content, finish_reason, usage counts) and carry
every other field of the message / delta, the choice and the response as it came (tool calls,
refusal, logprobs, vLLM's reasoning_content and stop_reason, usage details, ...), so nothing an
upstream answers is lost on the way to the client. Malformed bodies raise `ValueError`.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from experts.chat import ChatDelta, ChatResult, Usage

__all__ = ["SSEDecoder", "StreamError", "chunk", "completion", "error_message", "model_ids"]

_GATEWAY_SET = frozenset({"role"})
"""Message / delta fields the gateway writes itself."""


def _present(fields: dict[str, Any] | None) -> dict[str, Any]:
    """Streamed fields that carry something: a null field is the same as an absent one."""
    return {k: v for k, v in (fields or {}).items() if v is not None}


class _Usage(BaseModel):
    model_config = ConfigDict(extra="allow")

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int | None = None

    def to_domain(self) -> Usage:
        return Usage(self.prompt_tokens, self.completion_tokens, dict(self.model_extra or {}))


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str | None = None
    content: str | None = None


class _Choice(BaseModel):
    model_config = ConfigDict(extra="allow")

    index: int = 0
    message: _Message
    finish_reason: str | None = None


class _Completion(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | None = None
    object: str | None = None
    created: int | None = None
    model: str = ""
    choices: list[_Choice] = Field(min_length=1)
    usage: _Usage | None = None


class _Delta(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str | None = None
    content: str | None = None


class _ChunkChoice(BaseModel):
    model_config = ConfigDict(extra="allow")

    index: int = 0
    delta: _Delta = Field(default_factory=_Delta)
    finish_reason: str | None = None


class _Chunk(BaseModel):
    model_config = ConfigDict(extra="allow")

    choices: list[_ChunkChoice] = Field(default_factory=list)
    usage: _Usage | None = None
    error: Any = None


class _Model(BaseModel):
    id: str


class _ModelList(BaseModel):
    data: list[_Model]


def completion(body: bytes, fallback_model: str) -> ChatResult:
    """The first choice of a `chat.completion` body, with everything it carries."""
    try:
        parsed = _Completion.model_validate_json(body)
    except ValidationError as exc:
        raise ValueError("not a chat completion") from exc
    choice = parsed.choices[0]
    message = {k: v for k, v in (choice.message.model_extra or {}).items() if k not in _GATEWAY_SET}
    return ChatResult(
        content=choice.message.content,
        model=parsed.model or fallback_model,
        finish_reason=choice.finish_reason,
        usage=parsed.usage.to_domain() if parsed.usage else None,
        message=message,
        choice=dict(choice.model_extra or {}),
        response=dict(parsed.model_extra or {}),
    )


class StreamError(Exception):
    """The upstream put an error event into its stream; `detail` is its message."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def chunk(data: str) -> ChatDelta | None:
    """One `chat.completion.chunk` payload as a delta; None when it carries nothing.

    Raises `StreamError` for an error event, `ValueError` for a payload that is not a chunk.
    """
    try:
        parsed = _Chunk.model_validate_json(data)
    except ValidationError as exc:
        raise ValueError("not JSON of a chat chunk") from exc
    if parsed.error is not None:
        raise StreamError(error_message({"error": parsed.error}))
    choice = parsed.choices[0] if parsed.choices else None
    delta = ChatDelta(
        content=(choice.delta.content if choice else None) or "",
        finish_reason=choice.finish_reason if choice else None,
        usage=parsed.usage.to_domain() if parsed.usage else None,
        delta={
            k: v
            for k, v in _present(choice.delta.model_extra if choice else None).items()
            if k not in _GATEWAY_SET
        },
        choice=_present(choice.model_extra if choice else None),
    )
    return None if delta.empty else delta


def model_ids(body: bytes) -> tuple[str, ...]:
    """The ids of an OpenAI `/models` listing; ValueError when `body` is not one."""
    return tuple(m.id for m in _ModelList.model_validate_json(body).data)


class SSEDecoder:
    """Server-sent events, one line at a time: `feed(line)` returns an event's data when it ends.

    Comment lines (`:`) and fields other than `data` are ignored; several `data:` lines of one
    event are joined with newlines, as the SSE specification says.
    """

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        line = line.rstrip("\r\n")
        if not line:
            return self.flush()
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if field == "data":
            self._data.append(value.removeprefix(" "))
        return None

    def flush(self) -> str | None:
        """End the current event (blank line or end of stream); its data, if it had any."""
        if not self._data:
            return None
        data, self._data = "\n".join(self._data), []
        return data


def upstream_message(body: bytes) -> str:
    """The message of an OpenAI-shaped error body; "" for anything else."""
    try:
        return error_message(json.loads(body))
    except ValueError:
        return ""


def error_message(payload: Any) -> str:
    """The message of `{"error": {"message": ...}}` (OpenAI) or `{"object": "error", "message":
    ...}` (older vLLM); "" for anything else."""
    if not isinstance(payload, dict):
        return ""
    error = payload.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        return error
    if payload.get("object") == "error" and isinstance(payload.get("message"), str):
        return str(payload["message"])
    return ""
