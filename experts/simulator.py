"""A vLLM-API **simulator** for tests and load benchmarks. It is never a real model.

It answers with deterministic filler text derived from the last user message, at a configured
pace (time to first token, time between tokens), and fails on purpose at a configured rate in a
configured way. Two faces share one `Simulation`:

* `create_simulator_app(config)`: a Starlette app that speaks the subset of vLLM's HTTP API the
  gateway uses: `POST /v1/chat/completions` (streaming or not), `GET /v1/models`,
  `GET /health` and `GET /metrics` (`vllm:num_requests_running` / `vllm:num_requests_waiting`).
  `app.state.stats` (`SimulatorStats`) counts what it saw, for tests. `serve_simulator()` runs
  it with uvicorn (`coe simulate`).
* `SimulatedExpert(spec)`: the same behaviour in-process (`kind: simulator`), configured by
  `spec.options` (a `SimulatorConfig`), raising the `ExpertError` an HTTP expert would raise.

Failure modes (`fail_mode`, drawn with probability `failure_rate` from an RNG seeded by `seed`):
`status_500` / `status_503` answer that status (OpenAI error body); `hang` never answers (until
the client goes away); `disconnect_mid_stream` drops the connection and
`error_event_mid_stream` sends an in-stream error event, both after `fail_after_tokens` tokens
(on a non-streaming request they answer 500).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from experts.base import ChatDelta, ChatRequest, ChatResult, ExpertHealth, Usage
from experts.errors import ExpertError, ExpertTimeout, ExpertUnavailable, UpstreamError
from experts.vllm import RUNNING_METRIC, WAITING_METRIC
from registry.spec import ExpertSpec

__all__ = [
    "FailMode",
    "SimulatedExpert",
    "Simulation",
    "SimulatorConfig",
    "SimulatorStats",
    "create_simulator_app",
    "serve_simulator",
    "simulated_tokens",
]

FailMode = Literal[
    "status_500", "status_503", "hang", "disconnect_mid_stream", "error_event_mid_stream"
]
MID_STREAM_MODES: frozenset[str] = frozenset({"disconnect_mid_stream", "error_event_mid_stream"})

_FILLER = ("simulated", "answer", "from", "the", "coe", "simulator")


class SimulatorConfig(BaseModel):
    """How the simulator behaves. Also the `options` of a `kind: simulator` expert."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(default="coe-simulator", min_length=1, description="Served model id.")
    lora_adapters: tuple[str, ...] = Field(
        default=(), description="Extra model ids served, as vLLM lists LoRA adapters."
    )
    ttft_s: float = Field(default=0.0, ge=0, description="Delay before the first token.")
    inter_token_s: float = Field(default=0.0, ge=0, description="Delay between tokens.")
    completion_tokens: int = Field(
        default=16,
        ge=1,
        le=1_000_000,
        description="Tokens of a full answer; a smaller max_tokens cuts it (finish 'length').",
    )
    failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    fail_mode: FailMode = "status_500"
    fail_after_tokens: int = Field(default=2, ge=0, description="For the mid-stream modes.")
    seed: int = 0
    max_num_seqs: int = Field(
        default=256, ge=1, description="Requests served at once; the rest wait (as in vLLM)."
    )


@dataclass
class SimulatorStats:
    """What the simulator app saw; read by tests (plain ints, written by the server's loop)."""

    requests_received: int = 0
    streams_completed: int = 0
    streams_cancelled: int = 0
    """Streams the client closed before the end (the response generator was cancelled)."""
    streams_failed: int = 0
    """Streams that failed on purpose (mid-stream fail modes)."""
    last_request_body: dict[str, Any] | None = None


@dataclass(frozen=True)
class SimulatedAnswer:
    tokens: tuple[str, ...]
    finish_reason: str
    usage: Usage

    @property
    def text(self) -> str:
        return "".join(self.tokens)


def message_text(message: Mapping[str, Any]) -> str:
    """A message's text: string content, or the text parts of a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text of the last user message ("" when there is none)."""
    return next((message_text(m) for m in reversed(messages) if m.get("role") == "user"), "")


def simulated_tokens(prompt: str, count: int) -> tuple[str, ...]:
    """`count` deterministic tokens (words drawn from the prompt, seeded by its hash)."""
    words = prompt.split() or list(_FILLER)
    rng = random.Random(hashlib.sha256(prompt.encode()).digest())
    return tuple(("" if i == 0 else " ") + rng.choice(words) for i in range(count))


def _max_tokens(params: Mapping[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = params.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


class Simulation:
    """The behaviour both faces share: answers, failure draws and the load counters."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.running = 0
        self.waiting = 0
        self._rng = random.Random(config.seed)
        self._seats = asyncio.Semaphore(config.max_num_seqs)

    @property
    def models(self) -> tuple[str, ...]:
        return (self.config.model, *self.config.lora_adapters)

    def should_fail(self) -> bool:
        return self.config.failure_rate > 0 and self._rng.random() < self.config.failure_rate

    def answer(
        self, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
    ) -> SimulatedAnswer:
        wanted = self.config.completion_tokens
        limit = _max_tokens(params)
        count = min(wanted, limit) if limit is not None else wanted
        prompt_tokens = sum(len(message_text(m).split()) for m in messages)
        return SimulatedAnswer(
            tokens=simulated_tokens(last_user_text(messages), count),
            finish_reason="length" if count < wanted else "stop",
            usage=Usage(prompt_tokens=max(prompt_tokens, 1), completion_tokens=count),
        )

    def latency_s(self, answer: SimulatedAnswer) -> float:
        """Time a non-streaming answer takes."""
        return self.config.ttft_s + self.config.inter_token_s * max(len(answer.tokens) - 1, 0)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of `max_num_seqs` seats; `waiting` / `running` count the requests."""
        self.waiting += 1
        try:
            await self._seats.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self._seats.release()


def _simulated_error(mode: str, *, expert: str, before_first_byte: bool) -> ExpertError:
    """The ExpertError an HTTP expert would raise for this failure mode."""
    where = "before the first token" if before_first_byte else "mid-stream"
    if mode == "status_503":
        return ExpertUnavailable(f"simulated 503 from {expert!r}", expert=expert)
    if mode == "disconnect_mid_stream":
        return ExpertUnavailable(
            f"simulated disconnect of {expert!r} {where}",
            expert=expert,
            before_first_byte=before_first_byte,
        )
    if mode == "error_event_mid_stream":
        return UpstreamError(
            f"simulated error event from {expert!r} {where}",
            expert=expert,
            before_first_byte=before_first_byte,
        )
    return UpstreamError(f"simulated 500 from {expert!r}", expert=expert)


class SimulatedExpert:
    """An in-process simulator expert (`kind: simulator`); see the module docstring."""

    def __init__(self, spec: ExpertSpec) -> None:
        config = SimulatorConfig.model_validate(spec.options)
        if spec.model:
            config = config.model_copy(update={"model": spec.model})
        self._spec = spec
        self._sim = Simulation(config)

    def __repr__(self) -> str:
        return f"SimulatedExpert(name={self._spec.name!r}, model={self._sim.config.model!r})"

    @property
    def spec(self) -> ExpertSpec:
        return self._spec

    @property
    def config(self) -> SimulatorConfig:
        return self._sim.config

    async def start(self) -> None:
        """Nothing to warm up."""

    async def aclose(self) -> None:
        """Nothing to release."""

    async def chat(self, request: ChatRequest) -> ChatResult:
        answer = self._sim.answer(request.messages, request.params)
        async with self._sim.slot():
            if self._sim.should_fail():
                await self._fail(before_first_byte=True, streaming=False)
            await asyncio.sleep(self._sim.latency_s(answer))
        return ChatResult(
            content=answer.text,
            model=self._sim.config.model,
            finish_reason=answer.finish_reason,
            usage=answer.usage,
        )

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ChatDelta, None]:
        config = self._sim.config
        answer = self._sim.answer(request.messages, request.params)
        async with self._sim.slot():
            fail = self._sim.should_fail()
            if fail and config.fail_mode not in MID_STREAM_MODES:
                await self._fail(before_first_byte=True)
            await asyncio.sleep(config.ttft_s)
            for index, token in enumerate(answer.tokens):
                if fail and index == config.fail_after_tokens:
                    await self._fail(before_first_byte=index == 0)
                if index:
                    await asyncio.sleep(config.inter_token_s)
                yield ChatDelta(content=token)
            yield ChatDelta(finish_reason=answer.finish_reason, usage=answer.usage)

    async def health(self) -> ExpertHealth:
        return ExpertHealth(
            healthy=True,
            models=self._sim.models,
            running_requests=float(self._sim.running),
            waiting_requests=float(self._sim.waiting),
        )

    async def _fail(self, *, before_first_byte: bool, streaming: bool = True) -> None:
        """Raise what the HTTP face would make OpenAIExpert raise (mid-stream modes answer a
        non-streaming request with a 500); `hang` first waits out the spec's timeout."""
        mode = self._sim.config.fail_mode
        if not streaming and mode in MID_STREAM_MODES:
            mode = "status_500"
        if mode == "hang":
            await asyncio.sleep(self._spec.timeout_s)
            raise ExpertTimeout(
                f"simulated hang of {self.spec.name!r} timed out", expert=self._spec.name
            )
        raise _simulated_error(mode, expert=self._spec.name, before_first_byte=before_first_byte)


# -- the HTTP face ----------------------------------------------------------------------------


class _ChatCompletionRequest(BaseModel):
    """The fields of an OpenAI chat request the simulator reads; the rest is accepted."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


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
        message = {"role": "assistant", "content": self.answer.text}
        choice = {"index": 0, "message": message, "finish_reason": self.answer.finish_reason}
        return self._envelope("chat.completion", choices=[choice], usage=_usage(self.answer))

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
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
        for index, token in enumerate(self.answer.tokens):
            if self.fail and index == config.fail_after_tokens:
                self.failed = True
                if config.fail_mode == "disconnect_mid_stream":
                    raise _SimulatedDisconnect("simulated disconnect")
                yield _sse({"error": _error_body(500, "simulated error event")})
                yield _sse("[DONE]")
                return
            if index:
                await asyncio.sleep(config.inter_token_s)
            yield self.chunk({"content": token})
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
    params = body.model_dump(exclude={"messages", "model", "stream"})
    reply = _Reply(sim, state.stats, body, sim.answer(body.messages, params), sim.should_fail())
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
