"""Observability: OpenTelemetry spans of a routed, a streamed and a fused request, the W3C
`traceparent` the upstream receives, tracing off by default, and JSON log lines carrying the
request id. Spans go to the SDK's `InMemorySpanExporter`, registered as exporter `memory`
(`gateway.tracing.EXPORTERS`) and switched on with `OTEL_TRACES_EXPORTER=memory`."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway import tracing
from gateway.logs import JsonFormatter
from routers.embedder import Embedder
from tests.gateway.conftest import Gateway, Sim, expert, run_gateway, simulator, write_config

CHAT = "/v1/chat/completions"
MATH = "Compute 17 times 23."


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """Tracing on, into memory."""
    memory = InMemorySpanExporter()
    monkeypatch.setitem(tracing.EXPORTERS, "memory", lambda: memory)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "memory")
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    return memory


def ask(gw: Gateway, content: str = MATH, **body: object) -> httpx.Response:
    messages = [{"role": "user", "content": content}]
    response = httpx.post(f"{gw.url}{CHAT}", json={"messages": messages, **body}, timeout=30)
    assert response.status_code == 200, response.text
    return response


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def trace_id_of(traceparent: str) -> int:
    version, trace_id, _span_id, _flags = traceparent.split("-")
    assert version == "00"
    return int(trace_id, 16)


def test_the_on_off_rule() -> None:
    assert tracing.exporter_names({}) == []
    assert tracing.exporter_names({"OTEL_TRACES_EXPORTER": "none"}) == []
    assert tracing.exporter_names({"OTEL_TRACES_EXPORTER": "console, otlp"}) == ["console", "otlp"]
    disabled = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "TRUE"}
    assert tracing.exporter_names(disabled) == []
    assert not tracing.start({"OTEL_TRACES_EXPORTER": "no-such-exporter"})


def test_a_routed_request_is_traced_and_its_context_sent_upstream(
    exporter: InMemorySpanExporter, gateway: Gateway, sims: dict[str, Sim]
) -> None:
    response = ask(gateway)
    assert response.headers["x-coe-expert"] == "math-expert"
    headers = sims["math"].stats.last_request_headers or {}
    assert headers["x-request-id"] == response.headers["x-request-id"]
    sent = trace_id_of(headers["traceparent"])
    tracing.stop()  # flush
    spans = exporter.get_finished_spans()
    (root,) = named(spans, "coe.chat")
    (route,) = named(spans, "coe.route")
    (call,) = named(spans, "coe.expert_call")
    assert {s.context.trace_id for s in spans} == {sent}
    assert route.parent is not None and route.parent.span_id == root.context.span_id
    assert call.parent is not None and call.parent.span_id == root.context.span_id
    attrs = dict(route.attributes or {})
    assert attrs["coe.category"] == "math"
    assert attrs["coe.selected"] == ("math-expert",)
    assert isinstance(attrs["coe.confidence"], float)
    assert isinstance(attrs["coe.route.latency_ms"], float)
    assert attrs["coe.router"]
    call_attrs = dict(call.attributes or {})
    assert call_attrs["coe.expert"] == "math-expert"
    assert call_attrs["coe.expert.kind"] == "vllm"
    assert call_attrs["coe.role"] == "primary"
    assert call_attrs["coe.outcome"] == "ok"
    assert dict(root.attributes or {})["coe.request_id"] == response.headers["x-request-id"]


def test_the_callers_trace_context_is_continued(
    exporter: InMemorySpanExporter, gateway: Gateway, sims: dict[str, Sim]
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = f"00-{trace_id}-00f067aa0ba902b7-01"
    response = httpx.post(
        f"{gateway.url}{CHAT}",
        json={"messages": [{"role": "user", "content": MATH}]},
        headers={"traceparent": parent},
    )
    assert response.status_code == 200
    headers = sims["math"].stats.last_request_headers or {}
    assert trace_id_of(headers["traceparent"]) == int(trace_id, 16)


def test_a_stream_span_ends_with_the_stream(
    exporter: InMemorySpanExporter, gateway: Gateway
) -> None:
    response = ask(gateway, stream=True)
    assert "[DONE]" in response.text
    tracing.stop()
    (call,) = named(exporter.get_finished_spans(), "coe.expert_call")
    assert dict(call.attributes or {})["coe.outcome"] == "ok"


def test_a_failover_attempt_gets_its_own_span(
    exporter: InMemorySpanExporter, tmp_path: Path, embedder: Embedder
) -> None:
    with (
        simulator(model="broken", failure_rate=1.0) as broken,
        simulator(model="fine", completion_tokens=4) as fine,
    ):
        experts = [expert("math-expert", broken, ["math"]), expert("generalist", fine, ["*"])]
        with run_gateway(write_config(tmp_path, experts, upstream={"failover": 1}), embedder) as gw:
            assert ask(gw).headers["x-coe-failover-from"] == "math-expert"
    calls = named(exporter.get_finished_spans(), "coe.expert_call")
    outcomes = {
        (a["coe.expert"], a["coe.role"], a["coe.outcome"])
        for a in (dict(s.attributes or {}) for s in calls)
    }
    assert outcomes == {("math-expert", "primary", "error"), ("generalist", "failover", "ok")}


@pytest.fixture
def voters(tmp_path: Path, embedder: Embedder) -> Iterator[tuple[Gateway, dict[str, Sim]]]:
    with (
        simulator(model="a-model", fixed_answer="The answer is (B).") as a,
        simulator(model="b-model", fixed_answer="The answer is (B).") as b,
        simulator(model="c-model", fixed_answer="I think (C).") as c,
    ):
        sims = {"a": a, "b": b, "c": c}
        experts = [expert(name, sim, ["math"]) for name, sim in sims.items()]
        experts.append(expert("generalist", a, ["*"]))
        with run_gateway(write_config(tmp_path, experts), embedder) as gw:
            yield gw, sims


def test_a_fused_request_has_one_span_per_candidate(
    exporter: InMemorySpanExporter, voters: tuple[Gateway, dict[str, Sim]]
) -> None:
    gw, sims = voters
    response = ask(gw, coe={"fusion": "vote", "experts": ["a", "b", "c"]})
    assert response.headers["x-coe-fusion"] == "vote"
    sent = {trace_id_of((s.stats.last_request_headers or {})["traceparent"]) for s in sims.values()}
    tracing.stop()
    spans = exporter.get_finished_spans()
    calls = named(spans, "coe.expert_call")
    assert sorted(str(dict(s.attributes or {})["coe.expert"]) for s in calls) == ["a", "b", "c"]
    assert {dict(s.attributes or {})["coe.role"] for s in calls} == {"candidate"}
    assert len({s.context.span_id for s in calls}) == 3
    assert {s.context.trace_id for s in spans} == sent


def test_tracing_is_off_by_default(
    monkeypatch: pytest.MonkeyPatch, gateway: Gateway, sims: dict[str, Sim]
) -> None:
    memory = InMemorySpanExporter()
    monkeypatch.setitem(tracing.EXPORTERS, "memory", lambda: memory)
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    ask(gateway)
    headers = sims["math"].stats.last_request_headers or {}
    assert "x-request-id" in headers
    assert "traceparent" not in headers
    tracing.stop()
    assert memory.get_finished_spans() == ()


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("coe")
    logger.addHandler(handler)
    try:
        yield out
    finally:
        logger.removeHandler(handler)


def test_json_log_lines_carry_the_request_id(
    json_lines: io.StringIO, tmp_path: Path, embedder: Embedder
) -> None:
    with (
        simulator(model="broken", failure_rate=1.0) as broken,
        simulator(model="fine", completion_tokens=4) as fine,
    ):
        experts = [expert("math-expert", broken, ["math"]), expert("generalist", fine, ["*"])]
        with run_gateway(write_config(tmp_path, experts, upstream={"failover": 1}), embedder) as gw:
            request_id = ask(gw).headers["x-request-id"]
    records = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    failed = [r for r in records if "failed before first byte" in r["message"]]
    assert failed, records
    assert failed[0]["request_id"] == request_id
    assert failed[0]["level"] == "WARNING"
    assert failed[0]["logger"] == "coe.chat"
    assert {"time", "level", "logger", "message"} <= set(failed[0])


def test_json_log_lines_mask_secrets(json_lines: io.StringIO) -> None:
    logging.getLogger("coe.test").warning(
        "upstream said: bad header Authorization: Bearer abc.def-123 (key sk-0123456789abcdef)"
    )
    (record,) = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    assert "abc.def-123" not in record["message"]
    assert "sk-0123456789abcdef" not in record["message"]
    assert "request_id" not in record
