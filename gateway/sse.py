"""Server-sent events framing for OpenAI streams: `data: {json}` events, then `data: [DONE]`."""

from __future__ import annotations

from pydantic import BaseModel

from gateway.errors import HttpError

__all__ = ["DONE", "MEDIA_TYPE", "error_event", "event"]

MEDIA_TYPE = "text/event-stream"
DONE = b"data: [DONE]\n\n"


def event(payload: BaseModel) -> bytes:
    """One SSE event carrying a JSON-serialised model (None fields omitted)."""
    return b"data: " + payload.model_dump_json(exclude_none=True).encode() + b"\n\n"


def error_event(error: HttpError) -> bytes:
    """An error after the first byte: OpenAI clients read `{"error": ...}` from the stream."""
    return b"data: " + error.json().encode() + b"\n\n"
