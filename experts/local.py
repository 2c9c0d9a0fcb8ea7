"""`LocalExpert`: a transformers causal LM running in this process, on CPU.

Lifecycle::

    store = LocalModelStore()                   # one per process (the app lifespan owns it)
    expert = LocalExpert(spec, store=store)     # cheap; spec.model: None/"smollm2" or a dir
    await expert.start()                        # loads the model off the event loop, once
    async for delta in expert.stream(request):  # or: await expert.chat(request)
        ...
    await expert.aclose()                       # cancels this expert's generations; the
    store.close()                               # store keeps models until it is closed

Threading: loading and generation run in worker threads, never on the event loop. A loaded model
generates one request at a time (its `generate_lock`; CPU-bound, so more would only share the
cores); each generation thread waits for that lock, runs `model.generate()` with a streamer that
hands text to the event loop, and checks a cancel flag between tokens (a `StoppingCriteria`).
Closing a stream early, a timeout, a stop string or `aclose()` set that flag: the thread ends
within one token and frees the model. Stop strings are cut from the output, even when streaming.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Callable
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

from experts.base import ExpertHealth
from experts.chat import (
    ChatDelta,
    ChatRequest,
    ChatResult,
    Message,
    Usage,
    with_system_prompt,
)
from experts.errors import (
    ExpertCancelled,
    ExpertError,
    ExpertTimeout,
    ExpertUnavailable,
    UpstreamError,
    UpstreamRejected,
)
from experts.local_models import DEFAULT_SOURCE, LoadedModel, LocalModelStore
from experts.sampling import GenerationParams, LocalOptions, StopTrimmer
from registry.spec import ExpertSpec

__all__ = ["LocalExpert"]

_LOCK_POLL_S = 0.1
_JOIN_TIMEOUT_S = 30.0


class LocalExpert:
    """An expert answered by an in-process model from a `LocalModelStore`.

    `spec.options` sets generation defaults (`LocalOptions`: `max_tokens` (256), `temperature`,
    `top_p`, `repetition_penalty`); a bad option is a ValueError when the expert is built.
    A request `seed` seeds torch's global generator under the model's lock.
    """

    def __init__(self, spec: ExpertSpec, *, store: LocalModelStore) -> None:
        self._spec = spec
        self._options = LocalOptions.of(spec.name, spec.options)
        self._store = store
        self._source = spec.model or DEFAULT_SOURCE
        self._jobs: set[_Job] = set()
        self._closed = False

    @property
    def spec(self) -> ExpertSpec:
        return self._spec

    @property
    def name(self) -> str:
        return self._spec.name

    async def start(self) -> None:
        """Load the model (idempotent)."""
        await self._loaded()

    async def chat(self, request: ChatRequest) -> ChatResult:
        parts: list[str] = []
        last = ChatDelta()
        try:
            async for delta in self.stream(request):
                parts.append(delta.content)
                last = delta
        except ExpertError as exc:
            exc.before_first_byte = True  # the caller has received nothing yet
            raise
        return ChatResult(
            content="".join(parts),
            model=self._source,
            finish_reason=last.finish_reason,
            usage=last.usage,
            choice=last.choice,
        )

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ChatDelta, None]:
        params, messages = self._prepare(request)
        loaded = await self._loaded()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._spec.timeout_s
        job = _Job(loop, loaded, messages, params)
        self._jobs.add(job)
        trimmer = StopTrimmer(params.stop)
        sent = False
        try:
            job.start()
            while (text := await self._next(job, deadline, sent)) is not None:
                out, stopped = trimmer.feed(text)
                if out:
                    sent = True
                    yield ChatDelta(content=out)
                if stopped:
                    job.stopped_by_string = True
                    job.cancel.set()
                    break
            await self._drain(job, deadline, sent)
            yield self._final(job, "" if job.stopped_by_string else trimmer.flush())
        finally:
            job.cancel.set()
            self._jobs.discard(job)
            await job.wait_done(_JOIN_TIMEOUT_S)

    async def health(self) -> ExpertHealth:
        loaded = self._store.peek(self._source)
        if loaded is None:
            return ExpertHealth(healthy=False, detail="not loaded", models=(self._source,))
        return ExpertHealth(
            healthy=not self._closed,
            detail="loaded",
            models=(self._source,),
            running_requests=1.0 if loaded.busy else 0.0,
            waiting_requests=float(loaded.waiting),
        )

    async def aclose(self) -> None:
        """Cancel this expert's generations (they raise ExpertCancelled)."""
        self._closed = True
        for job in list(self._jobs):
            job.closed_by_expert = True
            job.cancel.set()

    async def _loaded(self) -> LoadedModel:
        if self._closed:
            raise ExpertCancelled(f"expert {self.name!r} is closed", expert=self.name)
        try:
            return await self._store.get(self._source)
        except ExpertError as exc:
            raise ExpertUnavailable(exc.message, expert=self.name) from exc

    def _prepare(self, request: ChatRequest) -> tuple[GenerationParams, list[dict[str, str]]]:
        unsupported = request.structured()
        if unsupported:
            raise UpstreamRejected(
                f"expert {self.name!r} (an in-process model) cannot honour {unsupported!r}: "
                "send it to an expert that can (for example a vLLM worker)",
                expert=self.name,
                status=400,
            )
        params = GenerationParams.resolve(request.sampling, self._options)
        messages = with_system_prompt(request.messages, self._spec.system_prompt)
        return params, _template_messages(messages)

    async def _next(self, job: _Job, deadline: float, sent: bool) -> str | None:
        """The next piece of text, or None at the end; raises on timeout or cancel."""
        remaining = deadline - job.loop.time()
        try:
            item = await asyncio.wait_for(job.queue.get(), timeout=max(remaining, 0.0))
        except TimeoutError as exc:
            raise ExpertTimeout(
                f"expert {self.name!r} timed out after {self._spec.timeout_s}s",
                expert=self.name,
                before_first_byte=not sent,
            ) from exc
        if item is None and job.closed_by_expert:
            raise ExpertCancelled(
                f"expert {self.name!r} was closed", expert=self.name, before_first_byte=not sent
            )
        return item

    async def _drain(self, job: _Job, deadline: float, sent: bool) -> None:
        """Wait for the generation thread to end (after a stop string), then check its error."""
        while not job.finished:
            await self._next(job, deadline, sent)
        if job.error is None:
            return
        if job.error_is_request:
            raise UpstreamRejected(
                f"expert {self.name!r}: {job.error}",
                expert=self.name,
                status=400,
                before_first_byte=not sent,
            ) from job.error
        raise UpstreamError(
            f"expert {self.name!r} failed: {type(job.error).__name__}: {job.error}",
            expert=self.name,
            before_first_byte=not sent,
        ) from job.error

    def _final(self, job: _Job, tail: str) -> ChatDelta:
        """The last delta: the held-back tail, the finish reason, usage, and the logprobs of
        every generated token when they were asked for (one list, as a client joins them)."""
        cut_short = job.completion_tokens >= job.max_new_tokens
        reason = "length" if cut_short and not (job.hit_eos or job.stopped_by_string) else "stop"
        usage = Usage(prompt_tokens=job.prompt_tokens, completion_tokens=job.completion_tokens)
        choice = {} if job.logprobs is None else {"logprobs": {"content": job.logprobs}}
        return ChatDelta(content=tail, finish_reason=reason, usage=usage, choice=choice)


def token_logprobs(
    tokenizer: Any, tokens: list[int], logits: tuple[torch.Tensor, ...], top: int
) -> list[dict[str, Any]]:
    """OpenAI's `logprobs.content`: each generated token with its log probability under the
    model's raw next-token distribution, and the `top` most likely alternatives."""

    def entry(token_id: int, logprob: float) -> dict[str, Any]:
        text = tokenizer.decode([token_id])
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    content = []
    for token_id, step in zip(tokens, logits, strict=False):
        logp = torch.log_softmax(step[0].float(), dim=-1)
        item = entry(token_id, float(logp[token_id]))
        values, indices = torch.topk(logp, top) if top else (logp[:0], logp[:0].long())
        item["top_logprobs"] = [
            entry(int(i), float(v)) for v, i in zip(values.tolist(), indices.tolist(), strict=True)
        ]
        content.append(item)
    return content


def _template_messages(messages: tuple[Message, ...]) -> list[dict[str, str]]:
    """Messages as the chat template reads them: role and text (text parts joined)."""
    return [{"role": m.role, "content": m.text()} for m in messages]


class _CancelFlag(StoppingCriteria):
    """Stops `generate()` at the next token once the event is set."""

    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self._event.is_set(), dtype=torch.bool)


class _LoopStreamer(TextStreamer):
    """transformers' text streamer (word-wise decoding) that posts text to a callback."""

    def __init__(self, tokenizer: Any, post: Callable[[str], None]) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self._post = post

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self._post(text)


class _Job:
    """One generation: its worker thread and what the thread reports back to the event loop.

    The thread posts text pieces to `queue`, then None when it ends (whatever the outcome).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        loaded: LoadedModel,
        messages: list[dict[str, str]],
        params: GenerationParams,
    ) -> None:
        self.loop = loop
        self.loaded = loaded
        self.messages = messages
        self.params = params
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.cancel = threading.Event()
        self.done = asyncio.Event()
        self.thread = threading.Thread(target=self._run, name="coe-local-generate", daemon=True)
        self.finished = False
        self.stopped_by_string = False
        self.closed_by_expert = False
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.max_new_tokens = params.max_tokens
        self.hit_eos = False
        self.error: BaseException | None = None
        self.error_is_request = False
        self.logprobs: list[dict[str, Any]] | None = None

    def start(self) -> None:
        self.thread.start()

    async def wait_done(self, timeout: float) -> None:
        if not self.thread.is_alive():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.done.wait()), timeout)
        if self.done.is_set():
            self.thread.join()  # setting `done` is the thread's last act: this returns at once

    def _post(self, item: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def _finish(self) -> None:
        def mark() -> None:
            self.finished = True
            self.done.set()
            self.queue.put_nowait(None)

        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(mark)

    def _run(self) -> None:
        loaded = self.loaded
        with _WAITING_GUARD:
            loaded.waiting += 1
        try:
            acquired = self._acquire()
        finally:
            with _WAITING_GUARD:
                loaded.waiting -= 1
        try:
            if acquired:
                self._generate()
        except Exception as exc:
            self.error = exc
        finally:
            if acquired:
                loaded.generate_lock.release()
            self._finish()

    def _acquire(self) -> bool:
        """Wait for the model, giving up when cancelled."""
        while not self.loaded.generate_lock.acquire(timeout=_LOCK_POLL_S):
            if self.cancel.is_set():
                return False
        if self.cancel.is_set():
            self.loaded.generate_lock.release()
            return False
        return True

    def _encode(self) -> dict[str, torch.Tensor]:
        tokenizer = self.loaded.tokenizer
        try:
            text = tokenizer.apply_chat_template(
                self.messages, add_generation_prompt=True, tokenize=False
            )
            inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        except Exception:
            self.error_is_request = True
            raise
        self.prompt_tokens = int(inputs["input_ids"].shape[1])
        room = self.loaded.max_length - self.prompt_tokens
        if room <= 0:
            self.error_is_request = True
            raise ValueError(
                f"prompt has {self.prompt_tokens} tokens; the model takes {self.loaded.max_length}"
            )
        self.max_new_tokens = min(self.params.max_tokens, room)
        return dict(inputs)

    def _generate(self) -> None:
        inputs = self._encode()
        loaded = self.loaded
        kwargs = self.params.generate_kwargs()
        pad = loaded.tokenizer.pad_token_id
        if self.params.seed is not None:
            torch.manual_seed(self.params.seed)
        top = self.params.logprobs
        if top is not None:  # the raw next-token logits of every step, as vLLM reports them
            kwargs |= {"output_logits": True, "return_dict_in_generate": True}
        with torch.inference_mode():
            output = loaded.model.generate(
                **inputs,
                **kwargs,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=pad if pad is not None else min(loaded.eos_ids, default=0),
                streamer=_LoopStreamer(loaded.tokenizer, self._post),
                stopping_criteria=StoppingCriteriaList([_CancelFlag(self.cancel)]),
            )
        sequences = output if top is None else output.sequences
        new_tokens = sequences[0, self.prompt_tokens :].tolist()
        self.completion_tokens = len(new_tokens)
        self.hit_eos = bool(new_tokens) and new_tokens[-1] in loaded.eos_ids
        if top is not None:
            self.logprobs = token_logprobs(loaded.tokenizer, new_tokens, output.logits, top)


_WAITING_GUARD = threading.Lock()
