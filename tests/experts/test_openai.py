"""OpenAIExpert against httpx.MockTransport fakes: request shape, error table, SSE, secrets."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import httpx
import pytest

from experts.chat import ChatDelta, ChatRequest, Message, Sampling, Usage
from experts.errors import (
    ExpertError,
    ExpertTimeout,
    ExpertUnavailable,
    UpstreamError,
    UpstreamRejected,
)
from experts.openai import OpenAIExpert
from experts.openai_wire import SSEDecoder
from tests.experts.conftest import make_spec

Handler = Callable[[httpx.Request], httpx.Response]
REQUEST = ChatRequest(messages=(Message("user", "hello"),))
SECRET = "sk-test-0123456789abcdef"


def completion(content: str = "hi there", model: str = "m1") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


def chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {
        "object": "chat.completion.chunk",
        "model": "m1",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def sse(*events: dict[str, Any] | str) -> bytes:
    parts = [e if isinstance(e, str) else f"data: {json.dumps(e)}\n\n" for e in events]
    return "".join(parts).encode()


def sse_response(body: bytes) -> httpx.Response:
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


def expert_with(handler: Handler, **spec: Any) -> tuple[OpenAIExpert, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return OpenAIExpert(make_spec(**spec), client), client


async def collect(expert: OpenAIExpert, request: ChatRequest = REQUEST) -> list[ChatDelta]:
    return [delta async for delta in expert.stream(request)]


# -- request shape -------------------------------------------------------------------------


async def test_chat_sends_model_messages_system_prompt_and_every_client_param() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=completion())

    expert, client = expert_with(
        handler, endpoint="http://upstream.test/v1/", system_prompt="Be brief."
    )
    request = ChatRequest(
        messages=(Message("user", "hello"),),
        sampling=Sampling(temperature=0.2, max_tokens=7, stop=("\n",), top_p=0.9, seed=3),
        extra={
            "x_vendor_extra": {"a": 1},
            "model": "client-model",
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        request_id="req-42",
    )
    async with client:
        result = await expert.chat(request)

    (sent,) = seen
    assert str(sent.url) == "http://upstream.test/v1/chat/completions"
    assert json.loads(sent.content) == {
        "model": "m1",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello"},
        ],
        "temperature": 0.2,
        "max_tokens": 7,
        "stop": ["\n"],
        "top_p": 0.9,
        "seed": 3,
        "x_vendor_extra": {"a": 1},
        "stream": False,
    }
    assert sent.headers["x-request-id"] == "req-42"
    assert "authorization" not in sent.headers
    assert sent.extensions["timeout"] == {"connect": 5.0, "read": 60.0, "write": 60.0, "pool": 5.0}
    assert result.content == "hi there"
    assert result.model == "m1"
    assert result.finish_reason == "stop"
    assert result.usage == Usage(prompt_tokens=3, completion_tokens=2)


async def test_timeouts_come_from_the_spec() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=completion())

    expert, client = expert_with(handler, timeout_s=12.5, connect_timeout_s=1.5)
    async with client:
        await expert.chat(REQUEST)
    assert seen[0].extensions["timeout"] == {
        "connect": 1.5,
        "read": 12.5,
        "write": 12.5,
        "pool": 1.5,
    }


async def test_stream_forwards_stream_options_and_asks_for_a_stream() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return sse_response(sse(chunk("a", "stop"), "data: [DONE]\n\n"))

    expert, client = expert_with(handler)
    request = ChatRequest(
        messages=REQUEST.messages,
        include_usage=True,
        extra={"stream_options": {"include_usage": True}},
    )
    async with client:
        await collect(expert, request)
    assert seen[0]["stream"] is True
    assert seen[0]["stream_options"] == {"include_usage": True}


async def test_the_shared_client_is_not_closed_by_the_expert() -> None:
    expert, client = expert_with(lambda _: httpx.Response(200, json=completion()))
    async with client:
        await expert.aclose()
        assert not client.is_closed
        assert (await expert.chat(REQUEST)).content == "hi there"


# -- error table ---------------------------------------------------------------------------

STATUS_TABLE: list[tuple[int, type[ExpertError], int | None]] = [
    (429, ExpertUnavailable, None),
    (503, ExpertUnavailable, None),
    (408, ExpertTimeout, None),
    (504, ExpertTimeout, None),
    (500, UpstreamError, 502),
    (502, UpstreamError, 502),
    (400, UpstreamRejected, 400),
    (401, UpstreamRejected, 401),
    (404, UpstreamRejected, 404),
    (422, UpstreamRejected, 422),
    (302, UpstreamError, 502),
]


def _exactly(error: ExpertError, kind: type[ExpertError], status: int | None) -> None:
    assert type(error) is kind
    assert error.before_first_byte is True
    assert error.expert == "e1"
    if status is not None:
        assert isinstance(error, UpstreamError)
        assert error.status == status


@pytest.mark.parametrize(("status", "kind", "mapped"), STATUS_TABLE)
async def test_status_mapping_for_chat(
    status: int, kind: type[ExpertError], mapped: int | None
) -> None:
    body = {"error": {"message": "upstream says no", "type": "x", "code": status}}
    expert, client = expert_with(lambda _: httpx.Response(status, json=body))
    async with client:
        with pytest.raises(ExpertError) as caught:
            await expert.chat(REQUEST)
    _exactly(caught.value, kind, mapped)
    assert "upstream says no" in str(caught.value)


@pytest.mark.parametrize(("status", "kind", "mapped"), STATUS_TABLE)
async def test_status_mapping_for_stream(
    status: int, kind: type[ExpertError], mapped: int | None
) -> None:
    expert, client = expert_with(lambda _: httpx.Response(status, text="<html>oops</html>"))
    async with client:
        with pytest.raises(ExpertError) as caught:
            await collect(expert)
    _exactly(caught.value, kind, mapped)
    assert "oops" not in str(caught.value)  # not OpenAI-shaped: the body is not repeated


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "max_tokens is too large", "type": "BadRequestError"}},
        {"object": "error", "message": "max_tokens is too large", "type": "BadRequestError"},
    ],
)
async def test_rejection_carries_the_upstream_message(body: dict[str, Any]) -> None:
    expert, client = expert_with(lambda _: httpx.Response(400, json=body))
    async with client:
        with pytest.raises(UpstreamRejected) as caught:
            await expert.chat(REQUEST)
    assert caught.value.status == 400
    assert "max_tokens is too large" in caught.value.message


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectError("refused"), ExpertUnavailable),
        (httpx.ConnectTimeout("slow connect"), ExpertTimeout),
        (httpx.ReadTimeout("slow read"), ExpertTimeout),
        (httpx.RemoteProtocolError("garbled"), ExpertUnavailable),
    ],
)
async def test_transport_errors_are_translated(
    exc: httpx.HTTPError, kind: type[ExpertError]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    expert, client = expert_with(handler)
    async with client:
        with pytest.raises(kind) as in_chat:
            await expert.chat(REQUEST)
        with pytest.raises(kind) as in_stream:
            await collect(expert)
    assert in_chat.value.__cause__ is exc
    assert in_stream.value.before_first_byte is True


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"choices": []}', b'{"choices": [{"text": "legacy"}]}'],
)
async def test_a_body_that_is_not_a_chat_completion_is_an_upstream_error(body: bytes) -> None:
    expert, client = expert_with(lambda _: httpx.Response(200, content=body))
    async with client:
        with pytest.raises(UpstreamError) as caught:
            await expert.chat(REQUEST)
    assert type(caught.value) is UpstreamError
    assert caught.value.status == 502


# -- streaming -----------------------------------------------------------------------------


async def test_stream_parses_sse_skips_empty_deltas_and_stops_at_done() -> None:
    body = sse(
        ": keep-alive comment\n\n",
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        chunk("Hel"),
        "\n",
        chunk("lo"),
        chunk(None, "stop"),
        {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}},
        "data: [DONE]\n\n",
        chunk("after done is ignored"),
    )
    expert, client = expert_with(lambda _: sse_response(body))
    async with client:
        deltas = await collect(expert)
    assert deltas == [
        ChatDelta(content="Hel"),
        ChatDelta(content="lo"),
        ChatDelta(finish_reason="stop"),
        ChatDelta(usage=Usage(prompt_tokens=4, completion_tokens=2)),
    ]


@pytest.mark.parametrize(("after", "first_byte"), [(0, True), (2, False)])
async def test_error_event_in_the_stream(after: int, first_byte: bool) -> None:
    events: list[dict[str, Any] | str] = [chunk(str(i)) for i in range(after)]
    events += [{"error": {"message": "engine died", "code": 500}}, "data: [DONE]\n\n"]
    expert, client = expert_with(lambda _: sse_response(sse(*events)))
    received: list[ChatDelta] = []
    async with client:
        with pytest.raises(UpstreamError) as caught:
            async for delta in expert.stream(REQUEST):
                received.append(delta)
    assert len(received) == after
    assert caught.value.before_first_byte is first_byte
    assert "engine died" in caught.value.message


async def test_a_chunk_that_is_not_json_is_an_upstream_error() -> None:
    expert, client = expert_with(lambda _: sse_response(b"data: {not json\n\n"))
    async with client:
        with pytest.raises(UpstreamError):
            await collect(expert)


@pytest.mark.parametrize(
    ("events", "ok"),
    [((chunk("a"),), False), ((chunk("a"), chunk(None, "stop")), True)],
)
async def test_a_stream_that_ends_without_done(
    events: tuple[dict[str, Any], ...], ok: bool
) -> None:
    expert, client = expert_with(lambda _: sse_response(sse(*events)))
    async with client:
        if ok:
            assert (await collect(expert))[-1].finish_reason == "stop"
        else:
            with pytest.raises(UpstreamError) as caught:
                await collect(expert)
            assert caught.value.before_first_byte is False


class FakeUpstreamBody(httpx.AsyncByteStream):
    """An SSE body that sends `chunks`, then either fails or keeps sending; records aclose."""

    def __init__(self, chunks: Iterable[bytes], *, then_fail: bool) -> None:
        self.chunks = list(chunks)
        self.then_fail = then_fail
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.chunks:
            yield piece
        if self.then_fail:
            raise httpx.ReadError("connection reset by peer")
        while True:  # an endless answer
            await asyncio.sleep(0.001)
            yield sse(chunk("."))

    async def aclose(self) -> None:
        self.closed = True


async def test_a_transport_error_after_the_first_delta_is_not_before_first_byte() -> None:
    body = FakeUpstreamBody([sse(chunk("a"))], then_fail=True)
    expert, client = expert_with(lambda _: httpx.Response(200, stream=body))
    received: list[ChatDelta] = []
    async with client:
        with pytest.raises(ExpertUnavailable) as caught:
            async for delta in expert.stream(REQUEST):
                received.append(delta)
    assert received == [ChatDelta(content="a")]
    assert caught.value.before_first_byte is False


async def test_closing_the_stream_early_closes_the_upstream_response() -> None:
    body = FakeUpstreamBody([sse(chunk("a"))], then_fail=False)
    expert, client = expert_with(lambda _: httpx.Response(200, stream=body))
    async with client:
        deltas = expert.stream(REQUEST)
        assert await anext(deltas) == ChatDelta(content="a")
        assert not body.closed
        await deltas.aclose()
    assert body.closed


async def test_cancelling_the_consuming_task_closes_the_upstream_response() -> None:
    body = FakeUpstreamBody([sse(chunk("a"))], then_fail=False)
    expert, client = expert_with(lambda _: httpx.Response(200, stream=body))
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in expert.stream(REQUEST):
            first.set()

    async with client:
        task = asyncio.create_task(consume())
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert body.closed


def test_sse_decoder_joins_multi_line_data_and_ignores_other_fields() -> None:
    decoder = SSEDecoder()
    lines = ["event: message", "id: 7", 'data: {"a":', "data: 1}", "", ": comment", ""]
    assert [decoder.feed(line) for line in lines] == [
        None,
        None,
        None,
        None,
        '{"a":\n1}',
        None,
        None,
    ]
    decoder.feed("data:[DONE]")
    assert decoder.flush() == "[DONE]"


# -- health --------------------------------------------------------------------------------


async def test_health_lists_the_models() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/models"
        return httpx.Response(200, json={"object": "list", "data": [{"id": "m1"}, {"id": "m2"}]})

    expert, client = expert_with(handler)
    async with client:
        health = await expert.health()
    assert health.healthy
    assert health.models == ("m1", "m2")


def _refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused", request=request)


@pytest.mark.parametrize(
    "handler",
    [lambda _: httpx.Response(500), lambda _: httpx.Response(200, content=b"<html>"), _refuse],
)
async def test_health_never_raises(handler: Handler) -> None:
    expert, client = expert_with(handler)
    async with client:
        health = await expert.health()
    assert not health.healthy
    assert health.detail


# -- secrets -------------------------------------------------------------------------------


async def test_api_key_is_sent_but_never_shown(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("COE_TEST_UPSTREAM_KEY", SECRET)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        echoed = f"Incorrect API key provided: {request.headers['authorization']}"
        return httpx.Response(401, json={"error": {"message": echoed}})

    caplog.set_level(logging.DEBUG)
    expert, client = expert_with(handler, api_key_env="COE_TEST_UPSTREAM_KEY")
    async with client:
        with pytest.raises(UpstreamRejected) as in_chat:
            await expert.chat(REQUEST)
        with pytest.raises(UpstreamRejected) as in_stream:
            await collect(expert)
        await expert.health()

    assert seen[0].headers["authorization"] == f"Bearer {SECRET}"
    shown = [repr(expert), str(expert.spec), repr(expert.spec), caplog.text]
    for error in (in_chat.value, in_stream.value):
        shown += [str(error), repr(error), error.message]
    assert "Incorrect API key provided" in in_chat.value.message
    for text in shown:
        assert SECRET not in text


async def test_a_key_in_an_error_event_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COE_TEST_UPSTREAM_KEY", SECRET)
    body = sse({"error": {"message": f"bad key {SECRET}"}}, "data: [DONE]\n\n")
    expert, client = expert_with(lambda _: sse_response(body), api_key_env="COE_TEST_UPSTREAM_KEY")
    async with client:
        with pytest.raises(UpstreamError) as caught:
            await collect(expert)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("value", [None, "", "  ", f"{SECRET}\nX-Injected: 1", f"{SECRET}é"])
def test_a_missing_or_bad_key_fails_at_build_time_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("COE_TEST_MISSING_KEY", raising=False)
    else:
        monkeypatch.setenv("COE_TEST_MISSING_KEY", value)
    with pytest.raises(ValueError, match="COE_TEST_MISSING_KEY") as caught:
        OpenAIExpert(
            make_spec(api_key_env="COE_TEST_MISSING_KEY"),
            httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(200))),
        )
    assert SECRET not in str(caught.value)


async def test_surrounding_whitespace_is_trimmed_from_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COE_TEST_UPSTREAM_KEY", f"  {SECRET}\n")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=completion())

    expert, client = expert_with(handler, api_key_env="COE_TEST_UPSTREAM_KEY")
    async with client:
        await expert.chat(REQUEST)
    assert seen[0].headers["authorization"] == f"Bearer {SECRET}"
