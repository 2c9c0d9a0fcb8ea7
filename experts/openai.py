"""`OpenAIExpert`: any OpenAI-compatible server, spoken to over the process's shared httpx client.

Lifecycle::

    expert = OpenAIExpert(spec, http)   # reads the API key from os.environ[spec.api_key_env]
    await expert.start()                # no-op
    await expert.chat(request)          # POST {endpoint}/chat/completions, "stream": false
    async for delta in expert.stream(request): ...   # same, "stream": true, SSE parsed here
    await expert.health()               # GET {endpoint}/models; never raises
    await expert.aclose()               # no-op: the AsyncClient belongs to the process

Every failure leaves as an `experts.errors.ExpertError`; HTTP statuses are translated in
`status_error()`, httpx exceptions by `map_httpx_errors`. The API key lives only in the
request headers: it is kept out of `repr()`, exception messages and logs, and redacted from
any upstream error message that echoes it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Mapping
from contextlib import AsyncExitStack
from typing import Any

import httpx
from opentelemetry import propagate

from experts import openai_wire
from experts.base import ExpertHealth
from experts.chat import ChatDelta, ChatRequest, ChatResult, with_system_prompt
from experts.errors import (
    ExpertError,
    ExpertTimeout,
    ExpertUnavailable,
    UpstreamError,
    UpstreamRejected,
    map_httpx_errors,
)
from registry.spec import ExpertSpec

__all__ = ["GATEWAY_OWNED_PARAMS", "OpenAIExpert", "status_error"]

GATEWAY_OWNED_PARAMS = frozenset({"model", "messages", "stream"})
"""Request fields the expert sets itself; never taken from a request's `extra`."""

_MAX_DETAIL_CHARS = 500


def status_error(
    status: int, body: bytes, *, expert: str, redact: str | None = None
) -> ExpertError:
    """Translate an upstream HTTP error status into the `experts.errors` tree.

    429/503 -> ExpertUnavailable, 408/504 -> ExpertTimeout, other 5xx -> UpstreamError (502),
    other 4xx -> UpstreamRejected(status) with the upstream's message when it is OpenAI-shaped,
    anything else that is not 2xx -> UpstreamError (502).
    """
    detail = openai_wire.upstream_message(body)[:_MAX_DETAIL_CHARS]
    if redact:
        detail = detail.replace(redact, "***")
    message = f"expert {expert!r} answered HTTP {status}" + (f": {detail}" if detail else "")
    if status in (429, 503):
        return ExpertUnavailable(message, expert=expert)
    if status in (408, 504):
        return ExpertTimeout(message, expert=expert)
    if 400 <= status < 500:
        return UpstreamRejected(message, expert=expert, status=status)
    return UpstreamError(message, expert=expert, status=502)


def _read_api_key(spec: ExpertSpec) -> str | None:
    """The key from os.environ[spec.api_key_env]; ValueError (naming the variable, never
    showing the value) when it is unset, empty or not a valid header value."""
    if spec.api_key_env is None:
        return None
    key = os.environ.get(spec.api_key_env, "").strip()
    if not key:
        raise ValueError(
            f"expert {spec.name!r}: environment variable {spec.api_key_env} "
            "(its api_key_env) is not set or empty"
        )
    if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
        raise ValueError(
            f"expert {spec.name!r}: environment variable {spec.api_key_env} holds characters "
            "an API key cannot have (whitespace, control or non-ASCII)"
        )
    return key


# -- the expert -----------------------------------------------------------------------------


class OpenAIExpert:
    """An expert behind any OpenAI-compatible `/v1` API (OpenAI, vLLM, llama.cpp, Ollama, ...)."""

    def __init__(self, spec: ExpertSpec, http: httpx.AsyncClient) -> None:
        if not spec.endpoint:
            raise ValueError(f"expert {spec.name!r} has no endpoint")
        self._spec = spec
        self._http = http
        self._base = spec.endpoint.rstrip("/")
        self._api_key = _read_api_key(spec)
        self._headers: dict[str, str] = {}
        if self._api_key is not None:
            self._headers["Authorization"] = f"Bearer {self._api_key}"
        self._timeout = httpx.Timeout(
            connect=spec.connect_timeout_s,
            read=spec.timeout_s,
            write=spec.timeout_s,
            pool=spec.connect_timeout_s,
        )
        self._probe_timeout = httpx.Timeout(spec.connect_timeout_s)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self._spec.name!r}, endpoint={self._base!r}, "
            f"model={self._spec.model!r})"
        )

    @property
    def spec(self) -> ExpertSpec:
        return self._spec

    @property
    def name(self) -> str:
        return self._spec.name

    async def start(self) -> None:
        """Nothing to warm up."""

    async def aclose(self) -> None:
        """Nothing to close: the AsyncClient is shared by the whole process."""

    async def model_name(self) -> str:
        """The upstream model id sent in each request."""
        if self._spec.model is None:
            raise ExpertUnavailable(f"expert {self.name!r} has no model", expert=self.name)
        return self._spec.model

    # -- chat -------------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> ChatResult:
        body = await self._body(request, stream=False)
        with map_httpx_errors(self.name):
            response = await self._http.post(
                f"{self._base}/chat/completions",
                json=body,
                headers=self._request_headers(request),
                timeout=self._timeout,
            )
        if not response.is_success:
            raise self._status_error(response.status_code, response.content)
        try:
            return openai_wire.completion(response.content, body["model"])
        except ValueError as exc:
            raise UpstreamError(
                f"expert {self.name!r} answered a body that is not a chat completion",
                expert=self.name,
            ) from exc

    # -- stream -----------------------------------------------------------------------------

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ChatDelta, None]:
        """Yield deltas as the upstream sends them; closing this generator closes the upstream
        response (and so its connection), which the upstream sees as a client disconnect."""
        body = await self._body(request, stream=True)
        first = True
        finished = False
        async with AsyncExitStack() as stack:
            with map_httpx_errors(self.name):
                response = await stack.enter_async_context(
                    self._http.stream(
                        "POST",
                        f"{self._base}/chat/completions",
                        json=body,
                        headers=self._request_headers(request),
                        timeout=self._timeout,
                    )
                )
                if not response.is_success:
                    await response.aread()
            if not response.is_success:
                raise self._status_error(response.status_code, response.content)
            lines = response.aiter_lines()
            decoder = openai_wire.SSEDecoder()
            while True:
                with map_httpx_errors(self.name, before_first_byte=first):
                    line = await anext(lines, None)
                data = decoder.flush() if line is None else decoder.feed(line)
                if data == "[DONE]":
                    return
                if data is not None:
                    delta = self._parse_chunk(data, before_first_byte=first)
                    if delta is not None:
                        finished = finished or delta.finish_reason is not None
                        yield delta
                        first = False
                if line is None:
                    break
        if not finished:
            raise UpstreamError(
                f"expert {self.name!r} ended its stream before [DONE]",
                expert=self.name,
                before_first_byte=first,
            )

    def _parse_chunk(self, data: str, *, before_first_byte: bool) -> ChatDelta | None:
        """One SSE `data:` payload -> a delta, None for an empty one, or an UpstreamError."""
        try:
            return openai_wire.chunk(data)
        except openai_wire.StreamError as exc:
            detail = exc.detail[:_MAX_DETAIL_CHARS] or "unknown"
            raise UpstreamError(
                self._redact(f"expert {self.name!r} sent an error event: {detail}"),
                expert=self.name,
                before_first_byte=before_first_byte,
            ) from None
        except ValueError as exc:
            raise UpstreamError(
                f"expert {self.name!r} sent a stream chunk that is not JSON of a chat chunk",
                expert=self.name,
                before_first_byte=before_first_byte,
            ) from exc

    # -- health -----------------------------------------------------------------------------

    async def health(self) -> ExpertHealth:
        """GET {endpoint}/models: healthy when it answers a model list. Never raises."""
        response = await self._probe(f"{self._base}/models")
        if isinstance(response, str):
            return ExpertHealth(healthy=False, detail=f"/models {response}")
        try:
            models = openai_wire.model_ids(response.content)
        except ValueError:
            return ExpertHealth(healthy=False, detail="/models answered no model list")
        return ExpertHealth(healthy=True, models=models)

    # -- helpers ----------------------------------------------------------------------------

    async def _probe(self, url: str) -> httpx.Response | str:
        """GET a health/metrics URL: the successful response, or why it failed. Never raises."""
        try:
            response = await self._http.get(url, headers=self._headers, timeout=self._probe_timeout)
        except httpx.HTTPError as exc:
            return f"unreachable ({type(exc).__name__})"
        if not response.is_success:
            return f"answered HTTP {response.status_code}"
        return response

    async def _body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The upstream request: the client's sampling fields and extras as they came, our
        model, messages (with the expert's system prompt) and `stream`."""
        extra = {k: v for k, v in request.extra.items() if k not in GATEWAY_OWNED_PARAMS}
        if not stream:
            extra.pop("stream_options", None)  # OpenAI rejects it on non-streaming requests
        messages = with_system_prompt(request.messages, self._spec.system_prompt)
        return {
            "model": await self.model_name(),
            "messages": [m.to_wire() for m in messages],
            **request.sampling.to_wire(),
            **extra,
            "stream": stream,
        }

    def _request_headers(self, request: ChatRequest) -> Mapping[str, str]:
        headers = dict(self._headers)
        if request.request_id:
            headers["X-Request-Id"] = request.request_id
        propagate.inject(headers)  # W3C traceparent of the current span; none when tracing is off
        return headers

    def _status_error(self, status: int, body: bytes) -> ExpertError:
        return status_error(status, body, expert=self.name, redact=self._api_key)

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text
