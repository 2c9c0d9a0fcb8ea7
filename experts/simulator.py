"""A vLLM-API **simulator** for tests and load benchmarks. It is never a real model.

It answers with deterministic filler text derived from the last user message, at a configured
pace (time to first token, time between tokens), and fails on purpose at a configured rate in a
configured way. Two faces share one `Simulation`:

* `experts.simulator_app.create_simulator_app(config)`: a Starlette app that speaks the subset
  of vLLM's HTTP API the gateway uses (chat completions, models, health, metrics); see there.
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
import random
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from experts.base import ExpertHealth
from experts.chat import ChatDelta, ChatRequest, ChatResult
from experts.errors import ExpertError, ExpertTimeout, ExpertUnavailable, UpstreamError
from experts.simulator_answers import SimulatedAnswer, SimulatedQuestion, compose
from registry.spec import ExpertSpec

__all__ = [
    "FailMode",
    "SimulatedExpert",
    "Simulation",
    "SimulatorConfig",
    "SimulatorStats",
    "question_of",
]

FailMode = Literal[
    "status_500", "status_503", "hang", "disconnect_mid_stream", "error_event_mid_stream"
]
MID_STREAM_MODES: frozenset[str] = frozenset({"disconnect_mid_stream", "error_event_mid_stream"})


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
    reasoning: bool = Field(
        default=False, description="Answer with vLLM's `reasoning_content` before the text."
    )
    refuse_marker: str | None = Field(
        default=None, description="Refuse (OpenAI's `refusal`) a user message containing this."
    )
    fixed_answer: str | None = Field(
        default=None,
        min_length=1,
        description="Answer this text (word by word) instead of filler, e.g. to make several "
        "simulators agree or disagree in fusion tests.",
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
    last_request_headers: dict[str, str] | None = None


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

    def answer(self, question: SimulatedQuestion) -> SimulatedAnswer:
        """The answer to `question` (`experts.simulator_answers`)."""
        config = self.config
        return compose(
            question,
            completion_tokens=config.completion_tokens,
            reasoning=config.reasoning,
            refuse_marker=config.refuse_marker,
            fixed_answer=config.fixed_answer,
        )

    def latency_s(self, answer: SimulatedAnswer) -> float:
        """Time a non-streaming answer takes."""
        return self.config.ttft_s + self.config.inter_token_s * max(len(answer.pieces()) - 1, 0)

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
        answer = self._sim.answer(question_of(request))
        async with self._sim.slot():
            if self._sim.should_fail():
                await self._fail(before_first_byte=True, streaming=False)
            await asyncio.sleep(self._sim.latency_s(answer))
        message = answer.message()
        logprobs = answer.logprobs()
        return ChatResult(
            content=message.pop("content"),
            model=self._sim.config.model,
            finish_reason=answer.finish_reason,
            usage=answer.usage,
            message=message,
            choice={} if logprobs is None else {"logprobs": logprobs},
        )

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ChatDelta, None]:
        config = self._sim.config
        answer = self._sim.answer(question_of(request))
        async with self._sim.slot():
            fail = self._sim.should_fail()
            if fail and config.fail_mode not in MID_STREAM_MODES:
                await self._fail(before_first_byte=True)
            await asyncio.sleep(config.ttft_s)
            for index, piece in enumerate(answer.pieces()):
                if fail and index == config.fail_after_tokens:
                    await self._fail(before_first_byte=index == 0)
                if index:
                    await asyncio.sleep(config.inter_token_s)
                yield _delta(piece, answer)
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


def question_of(request: ChatRequest) -> SimulatedQuestion:
    """What the simulator reads of a domain request (tools and logprobs from its extras)."""
    extra = request.extra
    tools = extra.get("tools")
    return SimulatedQuestion(
        messages=request.messages,
        token_limit=request.sampling.token_limit,
        tools=[t for t in tools if isinstance(t, Mapping)] if isinstance(tools, list) else (),
        tool_choice=extra.get("tool_choice"),
        parallel_tool_calls=extra.get("parallel_tool_calls"),
        logprobs=bool(request.sampling.logprobs),
        top_logprobs=request.sampling.top_logprobs or 0,
    )


def _delta(piece: Mapping[str, Any], answer: SimulatedAnswer) -> ChatDelta:
    """One streamed piece as a domain delta (logprobs, when asked for, with the text)."""
    content = piece.get("content")
    rest = {k: v for k, v in piece.items() if k != "content"}
    if isinstance(content, str):
        logprobs = answer.logprobs([content])
        return ChatDelta(content=content, choice={} if logprobs is None else {"logprobs": logprobs})
    return ChatDelta(delta=rest)
