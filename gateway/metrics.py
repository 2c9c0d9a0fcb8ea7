"""Prometheus metrics, on a registry owned by one app (no process globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_ROUTE_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1)


class Metrics:
    """All gateway metrics. Labels: expert, category, status (HTTP code), stream."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "coe_requests",
            "Chat requests answered, by expert, category and status.",
            ["expert", "category", "status", "stream"],
            registry=r,
        )
        self.latency = Histogram(
            "coe_request_seconds",
            "Chat request latency (full answer), by expert and category.",
            ["expert", "category", "stream"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "coe_time_to_first_token_seconds",
            "Time to the first streamed token.",
            ["expert", "category"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.route_latency = Histogram(
            "coe_route_seconds",
            "Router decision latency (embedding included).",
            ["router"],
            buckets=_ROUTE_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "coe_fallbacks",
            "Requests sent to the fallback expert or failed over.",
            ["reason"],
            registry=r,
        )
        self.expert_errors = Counter(
            "coe_expert_errors",
            "Expert failures by error class.",
            ["expert", "error"],
            registry=r,
        )
        self.inflight = Gauge(
            "coe_inflight_requests",
            "Requests being served, by expert.",
            ["expert"],
            registry=r,
        )
        self.experts = Gauge("coe_experts", "Enabled experts in the registry.", registry=r)
        self.registry_lost = Gauge(
            "coe_registry_lost",
            "1 while the registry has lost its data and the last good table is served.",
            registry=r,
        )
        self.expert_state = Gauge(
            "coe_expert_state",
            "Circuit breaker of each expert: 0 closed (in rotation), 1 half-open, 2 open.",
            ["expert"],
            registry=r,
        )
        self.probes = Counter(
            "coe_expert_probes",
            "Background health probes of remote experts, by result (ok, failed).",
            ["expert", "result"],
            registry=r,
        )
        self.fused = Counter(
            "coe_fused_requests",
            "Requests answered by fusion, by strategy.",
            ["strategy"],
            registry=r,
        )
        self.fusion_candidates = Counter(
            "coe_fusion_calls",
            "Expert calls made for fused requests (candidates, judges, aggregators).",
            ["strategy"],
            registry=r,
        )
        self.fusion_dropped = Counter(
            "coe_fusion_dropped",
            "Candidates dropped from a fused request (failed or missed the deadline).",
            ["strategy"],
            registry=r,
        )
        self.fusion_added = Histogram(
            "coe_fusion_added_seconds",
            "Latency a fused request added over its fastest candidate.",
            ["strategy"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
