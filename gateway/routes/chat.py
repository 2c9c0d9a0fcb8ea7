"""`POST /v1/chat/completions`: parse, ask `ChatService` once, render (JSON or SSE)."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from gateway import tracing
from gateway.answers import Answer, AnswerMeta
from gateway.deps import StateDep
from gateway.fusion.calls import ClientGone
from gateway.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    ResponseMessage,
    UsageInfo,
)
from gateway.sse import MEDIA_TYPE, chat_events

router = APIRouter(tags=["chat"])
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


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest,
    state: StateDep,
    http: Request,
    x_coe_conversation: Annotated[str | None, Header(max_length=256)] = None,
) -> Response:
    if body.extra_fields():
        log.debug("passing through non-standard fields: %s", ", ".join(body.extra_fields()))
    request = replace(body.to_domain(), conversation=x_coe_conversation or None)
    try:
        with tracing.span("coe.chat", parent=tracing.extract(http.headers)) as span:
            answer = await state.service.answer(request, disconnected=http.is_disconnected)
            meta = answer.meta
            span.set({"coe.request_id": meta.request_id, "coe.category": meta.category})
            span.set({"coe.expert": meta.expert, "coe.fusion": meta.fusion})
    except ClientGone:
        return Response(status_code=499)  # nobody is listening; every expert call was cancelled
    if isinstance(answer, Answer):
        return JSONResponse(_response(answer).model_dump(), headers=_headers(answer.meta))
    return StreamingResponse(
        chat_events(answer, include_usage=request.include_usage),
        media_type=MEDIA_TYPE,
        headers=_headers(answer.meta) | {"cache-control": "no-cache"},
    )
