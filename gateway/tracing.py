"""OpenTelemetry traces, off by default and configured by the standard `OTEL_*` variables.

On/off rule (read once, when the gateway starts): tracing is ON when `OTEL_TRACES_EXPORTER`
names at least one exporter other than `none` (e.g. `console`, or `otlp` once an
`opentelemetry-exporter-otlp*` package is installed) and `OTEL_SDK_DISABLED` is not `true`.
Otherwise, and when no named exporter can be loaded, it is OFF: `span()` hands out a shared
no-op handle and nothing is propagated upstream. (Unlike the SDK's own default of `otlp`, an
unset `OTEL_TRACES_EXPORTER` means off.) The other standard variables apply as the SDK reads
them: `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` (service name `coe-gateway` unless set),
`OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_*` and `OTEL_PROPAGATORS` (the
W3C `traceparent` goes into the upstream HTTP request headers, experts/openai.py).

Spans: `coe.chat` (one per chat request, child of the caller's `traceparent` if any),
`coe.route` (the routing decision) and `coe.expert_call` (one per expert call: single,
failover, fusion candidate, judge/aggregator, retriever search). The state is process-wide:
the last gateway started in a process owns it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import entry_points
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Status, StatusCode

from registry.spec import ExpertSpec
from routers.base import RouteDecision

__all__ = ["EXPORTERS", "Span", "current", "exporter_names", "extract", "span", "start", "stop"]

log = logging.getLogger("coe.tracing")

EXPORTERS: dict[str, Callable[[], SpanExporter]] = {}
"""Exporters by name, looked up before the `opentelemetry_traces_exporter` entry points (tests
and embedding apps register theirs here)."""

_state: dict[str, Any] = {"provider": None, "tracer": None}
Attribute = str | bool | int | float | list[str]


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The exporters the environment asks for; empty: tracing off (module doc)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    return [n for n in names if n and n != "none"]


def start(environ: Mapping[str, str]) -> bool:
    """Turn tracing on if the environment says so; True when it is on."""
    stop()
    exporters = [e for e in map(_load_exporter, exporter_names(environ)) if e is not None]
    if not exporters:
        return False
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "coe-gateway"}))
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    _state["provider"] = provider
    _state["tracer"] = provider.get_tracer("coe-gateway")
    log.info("tracing on: %s", ", ".join(type(e).__name__ for e in exporters))
    return True


def stop() -> None:
    """Flush and turn tracing off (gateway shutdown)."""
    provider: TracerProvider | None = _state["provider"]
    _state.update(provider=None, tracer=None)
    if provider is not None:
        provider.shutdown()


def _load_exporter(name: str) -> SpanExporter | None:
    factory = EXPORTERS.get(name)
    if factory is not None:
        return factory()
    found = entry_points(group="opentelemetry_traces_exporter", name=name)
    for point in found:
        exporter: SpanExporter = point.load()()
        return exporter
    log.error("OTEL_TRACES_EXPORTER: no exporter %r installed; it is ignored", name)
    return None


def extract(headers: Mapping[str, str]) -> otel_context.Context | None:
    """The caller's trace context (W3C `traceparent`), when tracing is on."""
    return propagate.extract(headers) if _state["tracer"] is not None else None


class Span:
    """A span handle; every method is a no-op when tracing is off."""

    __slots__ = ("_kept", "_span")

    def __init__(self, span: trace.Span | None) -> None:
        self._span = span
        self._kept = False

    def set(self, attributes: Mapping[str, Attribute | None]) -> None:
        """Set attributes (None values are skipped)."""
        if self._span is not None:
            for key, value in attributes.items():
                if value is not None:
                    self._span.set_attribute(key, value)

    def set_route(self, decision: RouteDecision) -> None:
        """The routing decision's attributes (span `coe.route`)."""
        if self._span is None:
            return
        names = [e.name for e in decision.experts]
        top = decision.categories[0][1] if decision.categories else None
        self.set(
            {
                "coe.router": decision.router or None,
                "coe.category": decision.category or "none",
                "coe.confidence": top if top is not None else decision.top_similarity,
                "coe.fallback": decision.fallback,
                "coe.experts": names,
                "coe.selected": names[: max(1, decision.selected)],
                "coe.route.latency_ms": decision.latency_ms,
                "coe.fusion": decision.fusion,
            }
        )

    def keep_open(self) -> None:
        """Leaving `span()` does not end this span; `end()` will (a stream ends later)."""
        self._kept = True

    def end(self, error: BaseException | None = None) -> None:
        """Record the outcome (`coe.outcome`: ok, error, cancelled) and end the span."""
        if self._span is None or not self._span.is_recording():
            return
        if error is None:
            self._span.set_attribute("coe.outcome", "ok")
        elif isinstance(error, Exception):
            self._span.set_attribute("coe.outcome", "error")
            self._span.set_attribute("error.type", type(error).__name__)
            self._span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
        else:
            self._span.set_attribute("coe.outcome", "cancelled")
        self._span.end()


_OFF = Span(None)


@contextlib.contextmanager
def span(
    name: str,
    attributes: Mapping[str, Attribute | None] | None = None,
    *,
    parent: otel_context.Context | None = None,
    expert: ExpertSpec | None = None,
) -> Iterator[Span]:
    """A span current inside the block, ended on leaving it (with the outcome) unless
    `keep_open()` was called. `expert`: its name, kind and model as attributes."""
    tracer: trace.Tracer | None = _state["tracer"]
    if tracer is None:
        yield _OFF
        return
    handle = Span(tracer.start_span(name, context=parent))
    if expert is not None:
        kind, model = expert.kind.value, expert.model
        handle.set({"coe.expert": expert.name, "coe.expert.kind": kind, "coe.expert.model": model})
    handle.set(attributes or {})
    try:
        with trace.use_span(handle._span, end_on_exit=False):  # type: ignore[arg-type]
            yield handle
    except BaseException as exc:
        handle.end(exc)
        raise
    if not handle._kept:
        handle.end()


def current(handle: Span) -> contextlib.AbstractContextManager[Any]:
    """Make `handle` the current span again for a block (a later step of a stream)."""
    if handle._span is None:
        return contextlib.nullcontext()
    return trace.use_span(handle._span, end_on_exit=False)
