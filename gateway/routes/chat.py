"""`POST /v1/chat/completions`: parse, ask `ChatService` once, render (JSON or SSE)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from experts.chat import ChatRequest, Usage
from gateway import tracing
from gateway.answers import Answer, AnswerMeta, AnswerStream
from gateway.deps import ClientDep, StateDep
from gateway.fusion.calls import ClientGone
from gateway.handlers import error_responses
from gateway.keys import Grant
from gateway.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    ResponseMessage,
    UsageInfo,
)
from gateway.sse import MEDIA_TYPE, chat_events
from gateway.state import GatewayState

router = APIRouter(
    tags=["chat"], responses=error_responses(400, 401, 403, 404, 413, 429, 502, 503, 504)
)
log = logging.getLogger("coe.chat")


def _headers(meta: AnswerMeta) -> dict[str, str]:
    headers = {
        "x-coe-expert": meta.expert,
        "x-coe-category": meta.category,
        "x-coe-route-ms": f"{meta.route_ms:.3f}",
        "x-request-id": meta.request_id,
    }
    if meta.fallback:
        headers["x-coe-fallback"] = "true"
    if meta.failover_from is not None:
        headers["x-coe-failover-from"] = meta.failover_from
    if meta.affinity is not None:
        headers["x-coe-affinity"] = meta.affinity
    headers["x-coe-experts"] = ",".join(meta.used)
    headers["x-coe-fusion"] = meta.fusion
    headers["x-coe-fusion-reason"] = meta.fusion_reason
    headers["x-coe-retrieval"] = meta.retrieval
    if meta.retrieval_reason:
        headers["x-coe-retrieval-reason"] = meta.retrieval_reason
    if meta.retrievers:
        headers["x-coe-retrievers"] = ",".join(meta.retrievers)
    return headers


def _response(answer: Answer) -> ChatCompletionResponse:
    """The expert's answer, whole: what the gateway does not read is returned as it came."""
    result = answer.result
    message = ResponseMessage(content=result.content, **result.message)
    return ChatCompletionResponse(
        id=answer.meta.request_id,
        created=int(time.time()),
        model=answer.meta.expert,
        choices=[Choice(message=message, finish_reason=result.finish_reason, **result.choice)],
        usage=UsageInfo.of(result.usage) if result.usage else UsageInfo(),
        **{**result.response, **_extension(answer.meta)},
    )


def _extension(meta: AnswerMeta) -> dict[str, object]:
    """The `coe` response extension (retrieved passages), when retrieval ran."""
    extension = meta.extension()
    return {} if extension is None else {"coe": extension}


@router.post(
    "/v1/chat/completions",
    response_model=None,
    responses={
        200: {
            "model": ChatCompletionResponse,
            "description": "The answer; with `stream: true`, server-sent events of chunks",
            "content": {
                "text/event-stream": {  # each event: `data: <chunk JSON>`, the last `[DONE]`
                    "schema": {
                        "type": "object",
                        "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
                    }
                }
            },
        }
    },
)
async def chat_completions(
    body: ChatCompletionRequest,
    state: StateDep,
    grant: ClientDep,
    http: Request,
    x_coe_conversation: Annotated[str | None, Header(max_length=256)] = None,
) -> Response:
    if body.extra_fields():
        log.debug("passing through non-standard fields: %s", ", ".join(body.extra_fields()))
    request = replace(body.to_domain(), conversation=x_coe_conversation or None)
    if grant is not None and state.quotas is not None:
        await state.quotas.admit(grant)  # 429 with retry-after when over a limit
        request = _with_upstream_usage(request)
    try:
        with tracing.span("coe.chat", parent=tracing.extract(http.headers)) as span:
            answer = await state.service.answer(
                request, grant=grant, disconnected=http.is_disconnected
            )
            meta = answer.meta
            span.set({"coe.request_id": meta.request_id, "coe.category": meta.category})
            span.set({"coe.expert": meta.expert, "coe.fusion": meta.fusion})
    except ClientGone:
        return Response(status_code=499)  # nobody is listening; every expert call was cancelled
    if isinstance(answer, Answer):
        await _record(state, grant, answer.meta, answer.result.usage or Usage())
        return JSONResponse(_response(answer).model_dump(), headers=_headers(answer.meta))
    return StreamingResponse(
        _counted(state, grant, answer, chat_events(answer, include_usage=request.include_usage)),
        media_type=MEDIA_TYPE,
        headers=_headers(answer.meta) | {"cache-control": "no-cache"},
    )


async def _record(state: GatewayState, grant: Grant | None, meta: AnswerMeta, usage: Usage) -> None:
    """A key's tokens and spend (the cost of every expert used) once its answer is known."""
    if grant is None or state.quotas is None:
        return
    table = state.pool.table
    cost = sum(spec.cost for name in meta.used if (spec := table.get(name)) is not None)
    await state.quotas.record(grant, usage.total_tokens, cost)


async def _counted(
    state: GatewayState, grant: Grant | None, answer: AnswerStream, events: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """The stream's events; its usage is recorded when it ends, completed or not."""
    try:
        async for event in events:
            yield event
    finally:
        await _record(state, grant, answer.meta, answer.usage or Usage())


def _with_upstream_usage(request: ChatRequest) -> ChatRequest:
    """A keyed stream asks its upstream for usage, to count the key's tokens; the client gets
    the usage chunk only if it asked (`request.include_usage` stays as it was)."""
    if not request.stream:
        return request
    options = request.extra.get("stream_options")
    options = {**options, "include_usage": True} if isinstance(options, dict) else None
    return replace(
        request, extra={**request.extra, "stream_options": options or {"include_usage": True}}
    )
