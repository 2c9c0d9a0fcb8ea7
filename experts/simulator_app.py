"""The HTTP face of the vLLM-API **simulator** (see `experts.simulator`). Never a real model.

`create_simulator_app(config)` is a Starlette app speaking the subset of vLLM's HTTP API the
gateway uses: `POST /v1/chat/completions` (streaming or not), `GET /v1/models`, `GET /health`
and `GET /metrics` (`vllm:num_requests_running` / `vllm:num_requests_waiting`).
`app.state.stats` (`SimulatorStats`) counts what it saw, for tests. `serve_simulator()` runs it
with uvicorn (`coe simulate`). Behaviour (pace, failures) comes from the shared `Simulation`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from experts.chat import Message, Role
from experts.simulator import MID_STREAM_MODES, Simulation, SimulatorConfig, SimulatorStats
from experts.simulator_answers import SimulatedAnswer, SimulatedQuestion
from experts.vllm import RUNNING_METRIC, WAITING_METRIC

__all__ = ["create_simulator_app", "serve_simulator"]


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Role
    content: str | list[dict[str, Any]] | None = None

    def to_domain(self) -> Message:
        content = self.content if not isinstance(self.content, list) else tuple(self.content)
        return Message(self.role, content)


class _ChatCompletionRequest(BaseModel):
    """The fields of an OpenAI chat request the simulator reads; the rest is accepted."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[_Message] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0, le=20)

    def answer(self, sim: Simulation) -> SimulatedAnswer:
        question = SimulatedQuestion(
            messages=[m.to_domain() for m in self.messages],
            token_limit=self.max_completion_tokens or self.max_tokens,
            tools=self.tools or (),
            tool_choice=self.tool_choice,
            parallel_tool_calls=self.parallel_tool_calls,
            logprobs=self.logprobs,
            top_logprobs=self.top_logprobs,
        )
        return sim.answer(question)


class _SimulatedDisconnect(Exception):
    """Raised inside a streaming response so the server drops the connection mid-body."""


class _DropConnection:
    """ASGI middleware: end the app quietly on `_SimulatedDisconnect`. The response is then
    incomplete, so the server closes the connection (and logs one line, not a traceback)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with contextlib.suppress(_SimulatedDisconnect):
            await self.app(scope, receive, send)


def _error_body(status: int, message: str, kind: str = "InternalServerError") -> dict[str, Any]:
    return {"message": message, "type": kind, "param": None, "code": status}


def _error_response(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": _error_body(status, message, kind)}, status_code=status)


def _sse(payload: Mapping[str, Any] | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n"


@dataclass
class _Reply:
    """One request's answer being rendered (non-streaming JSON or SSE chunks)."""

    sim: Simulation
    stats: SimulatorStats
    body: _ChatCompletionRequest
    answer: SimulatedAnswer
    fail: bool
    failed: bool = False
    id: str = field(default_factory=lambda: f"chatcmpl-sim-{random.getrandbits(64):016x}")
    created: int = field(default_factory=lambda: int(time.time()))

    def _envelope(self, kind: str, **fields: Any) -> dict[str, Any]:
        model = self.body.model or self.sim.config.model
        return {"id": self.id, "object": kind, "created": self.created, "model": model, **fields}

    def completion(self) -> dict[str, Any]:
        message = {"role": "assistant", **self.answer.message()}
        choice = {
            "index": 0,
            "message": message,
            "logprobs": self.answer.logprobs(),
            "finish_reason": self.answer.finish_reason,
        }
        return self._envelope("chat.completion", choices=[choice], usage=_usage(self.answer))

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> str:
        content = delta.get("content")
        logprobs = self.answer.logprobs([content]) if isinstance(content, str) and content else None
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        return _sse(self._envelope("chat.completion.chunk", choices=[choice], usage=None))

    async def events(self) -> AsyncIterator[str]:
        """The SSE body. A generator cancelled or closed before its end is a stream the client
        gave up on: counted in `stats.streams_cancelled`."""
        outcome = "cancelled"
        try:
            async with self.sim.slot(), contextlib.aclosing(self._events()) as events:
                async for event in events:
                    yield event
            outcome = "failed" if self.failed else "completed"
        except _SimulatedDisconnect:
            outcome = "failed"
            raise
        finally:
            if outcome == "completed":
                self.stats.streams_completed += 1
            elif outcome == "failed":
                self.stats.streams_failed += 1
            else:
                self.stats.streams_cancelled += 1

    async def _events(self) -> AsyncGenerator[str, None]:
        config = self.sim.config
        await asyncio.sleep(config.ttft_s)
        yield self.chunk({"role": "assistant", "content": ""})
        for index, piece in enumerate(self.answer.pieces()):
            if self.fail and index == config.fail_after_tokens:
                self.failed = True
                if config.fail_mode == "disconnect_mid_stream":
                    raise _SimulatedDisconnect("simulated disconnect")
                yield _sse({"error": _error_body(500, "simulated error event")})
                yield _sse("[DONE]")
                return
            if index:
                await asyncio.sleep(config.inter_token_s)
            yield self.chunk(piece)
        yield self.chunk({}, self.answer.finish_reason)
        if (self.body.stream_options or {}).get("include_usage"):
            usage = _usage(self.answer)
            yield _sse(self._envelope("chat.completion.chunk", choices=[], usage=usage))
        yield _sse("[DONE]")


def _usage(answer: SimulatedAnswer) -> dict[str, int]:
    usage = answer.usage
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


@dataclass
class _AppState:
    sim: Simulation
    stats: SimulatorStats
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        labels = ["model_name"]
        self.running = Gauge(RUNNING_METRIC, "Requests running.", labels, registry=self.registry)
        self.waiting = Gauge(WAITING_METRIC, "Requests waiting.", labels, registry=self.registry)


def _state(request: Request) -> _AppState:
    state: _AppState = request.app.state.simulator
    return state


async def _hang(request: Request) -> Response:
    """Answer nothing until the client goes away (then the answer is never sent)."""
    while not await request.is_disconnected():
        await asyncio.sleep(0.05)
    return Response(status_code=499)


async def _parse(request: Request, stats: SimulatorStats) -> _ChatCompletionRequest | Response:
    try:
        raw = await request.json()
    except ValueError:
        return _error_response(400, "request body is not JSON", "BadRequestError")
    stats.last_request_body = raw if isinstance(raw, dict) else None
    stats.last_request_headers = dict(request.headers)
    try:
        return _ChatCompletionRequest.model_validate(raw)
    except ValidationError as exc:
        return _error_response(400, f"invalid request: {exc.errors()[0]['msg']}", "BadRequestError")


async def chat_completions(request: Request) -> Response:
    """POST /v1/chat/completions"""
    state = _state(request)
    sim = state.sim
    state.stats.requests_received += 1
    body = await _parse(request, state.stats)
    if isinstance(body, Response):
        return body
    if body.model is not None and body.model not in sim.models:
        return _error_response(404, f"The model `{body.model}` does not exist.", "NotFoundError")
    reply = _Reply(sim, state.stats, body, body.answer(sim), sim.should_fail())
    mode = sim.config.fail_mode
    if reply.fail and mode == "hang":
        return await _hang(request)
    if reply.fail and (mode not in MID_STREAM_MODES or not body.stream):
        status = 503 if mode == "status_503" else 500
        return _error_response(status, f"simulated {status}", "InternalServerError")
    if body.stream:
        return StreamingResponse(reply.events(), media_type="text/event-stream")
    async with sim.slot():
        await asyncio.sleep(sim.latency_s(reply.answer))
    return JSONResponse(reply.completion())


async def list_models(request: Request) -> Response:
    """GET /v1/models"""
    sim = _state(request).sim
    data = [{"id": m, "object": "model", "owned_by": "coe-simulator"} for m in sim.models]
    return JSONResponse({"object": "list", "data": data})


async def health(_: Request) -> Response:
    """GET /health"""
    return Response(status_code=200)


async def metrics(request: Request) -> Response:
    """GET /metrics: vLLM's load gauges, labelled by model as vLLM does."""
    state = _state(request)
    state.running.labels(model_name=state.sim.config.model).set(state.sim.running)
    state.waiting.labels(model_name=state.sim.config.model).set(state.sim.waiting)
    return Response(generate_latest(state.registry), media_type=CONTENT_TYPE_LATEST)


def create_simulator_app(config: SimulatorConfig) -> Starlette:
    """The simulator as a Starlette app; `app.state.stats` is its `SimulatorStats`."""
    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(_DropConnection)])
    app.state.simulator = _AppState(Simulation(config), SimulatorStats())
    app.state.stats = app.state.simulator.stats
    return app


def serve_simulator(config: SimulatorConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the simulator app with uvicorn until interrupted (blocking); `coe simulate`."""
    import uvicorn

    uvicorn.run(create_simulator_app(config), host=host, port=port, log_level="info")
