"""`POST /v1/chat/completions`: parse, call `ChatService`, render (JSON or SSE)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse

from experts.base import ChatDelta, Usage
from gateway.deps import StateDep
from gateway.errors import error_from_exception
from gateway.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    ChunkChoice,
    DeltaMessage,
    ResponseMessage,
    UsageInfo,
)
from gateway.service import ChatService, OpenStream, Plan
from gateway.sse import DONE, MEDIA_TYPE, error_event, event

router = APIRouter(tags=["chat"])
log = logging.getLogger("coe.chat")


def _headers(plan: Plan, expert: str) -> dict[str, str]:
    headers = {
        "x-coe-expert": expert,
        "x-coe-category": plan.category,
        "x-coe-route-ms": f"{plan.route_ms:.3f}",
        "x-request-id": plan.request_id,
    }
    if plan.decision is not None and plan.decision.fallback:
        headers["x-coe-fallback"] = "true"
    if expert != plan.candidates[0]:
        headers["x-coe-failover-from"] = plan.candidates[0]
    return headers


def _usage(usage: Usage | None) -> UsageInfo | None:
    if usage is None:
        return None
    return UsageInfo(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest, state: StateDep
) -> JSONResponse | StreamingResponse:
    if body.extra_fields():
        log.debug("passing through non-standard fields: %s", ", ".join(body.extra_fields()))
    service = state.service
    plan = await service.plan(body)
    if body.stream:
        stream = await service.open_stream(body, plan)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            _sse(service, plan, stream, include_usage),
            media_type=MEDIA_TYPE,
            headers=_headers(plan, stream.expert) | {"cache-control": "no-cache"},
        )
    expert, result = await service.complete(body, plan)
    response = ChatCompletionResponse(
        id=plan.request_id,
        created=int(time.time()),
        model=expert,
        choices=[
            Choice(
                message=ResponseMessage(content=result.content), finish_reason=result.finish_reason
            )
        ],
        usage=_usage(result.usage) or UsageInfo(),
    )
    return JSONResponse(response.model_dump(exclude_none=True), headers=_headers(plan, expert))


async def _sse(
    service: ChatService, plan: Plan, stream: OpenStream, include_usage: bool
) -> AsyncIterator[bytes]:
    """The OpenAI chunk stream; an error after the first byte goes into the stream, then [DONE]."""
    created = int(time.time())

    def chunk(delta: DeltaMessage, finish: str | None = None) -> bytes:
        return event(
            ChatCompletionChunk(
                id=plan.request_id,
                created=created,
                model=stream.expert,
                choices=[ChunkChoice(delta=delta, finish_reason=finish)],
            )
        )

    error: BaseException | None = None
    usage: Usage | None = None
    try:
        yield chunk(DeltaMessage(role="assistant", content=""))
        delta: ChatDelta | None = stream.first
        while delta is not None:  # to the end: usage may follow the finish_reason delta
            usage = delta.usage or usage
            if delta.content:
                yield chunk(DeltaMessage(content=delta.content))
            if delta.finish_reason is not None:
                yield chunk(DeltaMessage(), delta.finish_reason)
            delta = await anext(stream.rest, None)
        if include_usage:
            yield event(
                ChatCompletionChunk(
                    id=plan.request_id,
                    created=created,
                    model=stream.expert,
                    choices=[],
                    usage=_usage(usage) or UsageInfo(),
                )
            )
    except Exception as exc:
        error = exc
        log.warning(
            "request %s: stream from %s failed after first byte: %s",
            plan.request_id,
            stream.expert,
            exc,
        )
        yield error_event(error_from_exception(exc))
    except BaseException as exc:  # client went away: cancel the upstream request
        error = exc
        raise
    finally:
        await stream.aclose()
        service.finish_stream(stream, plan, error)
    yield DONE
