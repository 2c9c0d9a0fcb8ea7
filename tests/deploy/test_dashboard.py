"""The Grafana dashboard (deploy/grafana/coe-gateway.json) against the gateway's real metrics.

Metric and label names come from `gateway.metrics.Metrics()`'s own registry: one child of every
labelled metric is created so that `CollectorRegistry.collect()` yields its exposed sample names
(`x_total`, `x_bucket`, ...) and their label names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from gateway.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "coe-gateway.json"
README = ROOT / "README.md"

METRIC_RE = re.compile(r"\bcoe_[A-Za-z0-9_]+")
SELECTOR_RE = re.compile(r"\b(coe_[A-Za-z0-9_]+)\{([^}]*)\}")
SELECTOR_LABEL_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
BY_RE = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
VARIABLE_RE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
LABEL_VALUES_RE = re.compile(
    r"label_values\(\s*(coe_[A-Za-z0-9_]+)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)"
)


def _exposed() -> tuple[dict[str, set[str]], dict[str, str]]:
    """(sample name -> its label names, family name -> family type) as the gateway exposes them."""
    metrics = Metrics()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            names = tuple(getattr(value, "_labelnames", ()))
            if names:
                value.labels(*(["x"] * len(names)))
    samples: dict[str, set[str]] = {}
    families: dict[str, str] = {}
    for family in metrics.registry.collect():
        families[family.name] = family.type
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples, families


SAMPLES, FAMILIES = _exposed()


def _dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _panels(data: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in data["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows nest their panels
    return [p for p in out if p.get("type") != "row"]


def _exprs() -> list[str]:
    return [t["expr"] for p in _panels(_dashboard()) for t in p["targets"]]


def _variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in _dashboard()["templating"]["list"]}


def test_registry_is_read() -> None:
    assert "coe_requests_total" in SAMPLES
    assert "coe_request_seconds_bucket" in SAMPLES
    assert {"expert", "category", "status", "stream"} <= SAMPLES["coe_requests_total"]


def test_dashboard_shape() -> None:
    data = _dashboard()
    assert data["schemaVersion"] >= 36
    assert data["uid"] and data["title"]
    panels = _panels(data)
    assert len(panels) >= 10
    assert len({p["id"] for p in data["panels"]}) == len(data["panels"])
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_template_variables() -> None:
    variables = _variables()
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("expert", "category"):
        var = variables[name]
        assert var["type"] == "query"
        definition = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = LABEL_VALUES_RE.fullmatch(definition.strip())
        assert match, definition
        metric, label = match.groups()
        assert label == name
        assert metric in SAMPLES and label in SAMPLES[metric], definition


@pytest.mark.parametrize("expr", _exprs())
def test_expr_uses_defined_variables(expr: str) -> None:
    defined = set(_variables())
    for name in VARIABLE_RE.findall(expr):
        assert name.startswith("__") or name in defined, f"${name} undefined in {expr}"


@pytest.mark.parametrize("expr", _exprs())
def test_expr_metrics_and_labels_exist(expr: str) -> None:
    metrics = set(METRIC_RE.findall(expr))
    assert metrics, f"no coe_ metric in {expr}"
    unknown = metrics - set(SAMPLES)
    assert not unknown, f"{sorted(unknown)} not exposed by the gateway (have {sorted(SAMPLES)})"
    for metric, body in SELECTOR_RE.findall(expr):
        for label in SELECTOR_LABEL_RE.findall(body):
            assert label in SAMPLES[metric], f"{metric} has no label {label!r}"
    for group in BY_RE.findall(expr):
        for label in filter(None, (part.strip() for part in group.split(","))):
            for metric in metrics:
                assert label in SAMPLES[metric], f"by ({label}) but {metric} has no such label"


def test_every_metric_is_on_the_dashboard() -> None:
    used = {m for expr in _exprs() for m in METRIC_RE.findall(expr)}
    for family in FAMILIES:
        assert any(u == family or u.startswith(family + "_") for u in used), family


def test_every_metric_is_documented() -> None:
    readme = README.read_text(encoding="utf-8")
    for family, kind in FAMILIES.items():
        exposed = family + "_total" if kind == "counter" else family
        assert f"| `{exposed}` | {kind} |" in readme, exposed
