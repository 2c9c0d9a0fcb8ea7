"""Server-sent events for OpenAI chat streams: chunks as `data: {json}`, then `data: [DONE]`.

`chat_events(stream)` renders an `AnswerStream`: a first chunk with the assistant role (and the
`coe` extension with the retrieved passages, when retrieval ran), one
chunk per delta of the expert (its text, what else its delta and choice carried, such as tool-call
fragments and logprobs, and the finish reason on the last), an optional usage chunk, `[DONE]`. An
error after the first byte can no longer change the status code, so it goes into the stream as
`data: {"error": ...}` (what OpenAI clients read), followed by `[DONE]`. When the client goes
away, the generator is closed: the stream is closed with it, which cancels the upstream call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from pydantic import BaseModel

from experts.chat import ChatDelta, Usage
from gateway.answers import AnswerStream
from gateway.errors import HttpError, error_from_exception
from gateway.protocol import ChatCompletionChunk, ChunkChoice, DeltaMessage, UsageInfo

__all__ = ["DONE", "MEDIA_TYPE", "chat_events", "error_event", "event"]

log = logging.getLogger("coe.sse")

MEDIA_TYPE = "text/event-stream"
DONE = b"data: [DONE]\n\n"


def event(payload: BaseModel) -> bytes:
    """One SSE event carrying a JSON-serialised model (None fields omitted)."""
    return b"data: " + payload.model_dump_json(exclude_none=True).encode() + b"\n\n"


def error_event(error: HttpError) -> bytes:
    """An error after the first byte: OpenAI clients read `{"error": ...}` from the stream."""
    return b"data: " + error.json().encode() + b"\n\n"


async def chat_events(stream: AnswerStream, *, include_usage: bool) -> AsyncIterator[bytes]:
    """The OpenAI chunk stream of `stream` (module docstring); always closes `stream`."""
    meta = stream.meta
    created = int(time.time())

    def chunk(delta: ChatDelta | None, first: bool = False, usage: Usage | None = None) -> bytes:
        choices = []
        if first:
            choices = [ChunkChoice(delta=DeltaMessage(role="assistant", content=""))]
        elif delta is not None:
            piece = DeltaMessage(content=delta.content or None, **delta.delta)
            choices = [ChunkChoice(delta=piece, finish_reason=delta.finish_reason, **delta.choice)]
        return event(
            ChatCompletionChunk(
                id=meta.request_id,
                created=created,
                model=meta.expert,
                choices=choices,
                usage=None if usage is None else UsageInfo.of(usage),
                coe=meta.extension() if first else None,
            )
        )

    usage: Usage | None = None
    try:
        yield chunk(None, first=True)
        async for delta in stream:  # to the end: usage may follow the finish_reason delta
            usage = delta.usage or usage
            if delta.content or delta.delta or delta.choice or delta.finish_reason:
                yield chunk(delta)
        if include_usage:
            yield chunk(None, usage=usage or Usage())
    except Exception as exc:
        log.warning("request %s: stream from %s ended with: %s", meta.request_id, meta.expert, exc)
        yield error_event(error_from_exception(exc))
    finally:  # also on client disconnect (GeneratorExit / cancellation): cancels the upstream
        await stream.aclose()
    yield DONE
