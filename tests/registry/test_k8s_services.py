"""A labelled Service -> an expert spec (registry/k8s_services.py), on recorded Service objects."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from registry.k8s_services import ANNOTATIONS, ServiceError, spec_from_service
from registry.spec import ExpertKind

FIXTURES = Path(__file__).parents[1] / "fixtures" / "k8s"


def recorded(name: str) -> dict[str, Any]:
    """One Service of the recorded list, a fresh copy."""
    items = json.loads((FIXTURES / "services.json").read_text())["items"]
    return copy.deepcopy(next(item for item in items if item["metadata"]["name"] == name))


def annotated(name: str, **notes: str) -> dict[str, Any]:
    service = recorded(name)
    service["metadata"]["annotations"].update({f"coe.io/{k}": v for k, v in notes.items()})
    return service


def test_a_vllm_service_becomes_an_expert_on_its_http_port() -> None:
    spec = spec_from_service(recorded("vllm-math"))
    assert spec.name == "qwen-math"
    assert spec.kind is ExpertKind.VLLM
    assert spec.endpoint == "http://vllm-math.coe.svc:8000/v1"  # the port named http, not 9090
    assert spec.model == "Qwen/Qwen2.5-Math-1.5B-Instruct"
    assert spec.categories == ["math", "physics"]
    assert (spec.cost, spec.timeout_s) == (1.5, 120.0)
    assert spec.managed_by == "kubernetes:coe/vllm-math"


def test_defaults_kind_vllm_and_the_first_port() -> None:
    spec = spec_from_service(recorded("vllm-code"))
    assert (spec.kind, spec.endpoint) == (ExpertKind.VLLM, "http://vllm-code.coe.svc:8000/v1")
    assert (spec.cost, spec.enabled) == (1.0, True)


def test_named_port_scheme_and_api_key_variable() -> None:
    spec = spec_from_service(recorded("openai-proxy"))
    assert spec.endpoint == "https://openai-proxy.coe.svc:443/v1"
    assert (spec.kind, spec.api_key_env, spec.categories) == (
        ExpertKind.OPENAI,
        "OPENAI_API_KEY",
        ["*"],
    )


def test_endpoint_path_and_json_annotations() -> None:
    spec = spec_from_service(
        annotated(
            "vllm-code",
            endpoint="http://10.0.0.9:9000/openai/v1",
            exemplars='["write a quicksort", "fix this segfault"]',
            options='{"lora": "sql-adapter"}',
            enabled="false",
            **{"max-concurrency": "4"},
        )
    )
    assert spec.endpoint == "http://10.0.0.9:9000/openai/v1"
    assert spec.exemplars == ["write a quicksort", "fix this segfault"]
    assert spec.options == {"lora": "sql-adapter"}
    assert (spec.enabled, spec.max_concurrency) == (False, 4)
    retriever = spec_from_service(annotated("vllm-code", kind="retriever", port="8000"))
    assert retriever.endpoint == "http://vllm-code.coe.svc:8000"  # an index server: no /v1


@pytest.mark.parametrize(
    ("notes", "field", "says"),
    [
        ({"cost": "cheap"}, "coe.io/cost", "could not convert"),
        ({"categories": "", "exemplars": "[1, 2]"}, "coe.io/exemplars", "list of strings"),
        ({"options": "[]"}, "coe.io/options", "JSON object"),
        ({"enabled": "yes"}, "coe.io/enabled", "true or false"),
        ({"kind": "local"}, "coe.io/kind", "one of vllm, openai, retriever"),
        ({"port": "grpc"}, "coe.io/port", "not a port of the Service"),
        ({"scheme": "ftp"}, "coe.io/scheme", "http or https"),
        ({"path": "v1"}, "coe.io/path", "must start with '/'"),
        ({"catgories": "math"}, "coe.io/catgories", "unknown annotation"),
        ({"cost": "-1"}, "cost", "greater than or equal to 0"),
        ({"kind": "openai", "model": ""}, "spec", "needs a 'model'"),
    ],
)
def test_a_bad_annotation_is_named(notes: dict[str, str], field: str, says: str) -> None:
    with pytest.raises(ServiceError) as caught:
        spec_from_service(annotated("vllm-code", **notes))
    assert caught.value.field == field
    assert caught.value.service == "coe/vllm-code"
    assert says in str(caught.value)


def test_an_expert_name_the_registry_refuses_is_named() -> None:
    service = recorded("vllm-code")
    service["metadata"]["labels"]["coe.io/expert"] = "-bad"
    with pytest.raises(ServiceError, match="coe/vllm-code: name"):
        spec_from_service(service)


def test_a_service_without_ports_is_refused() -> None:
    service = recorded("vllm-code")
    service["spec"]["ports"] = []
    with pytest.raises(ServiceError, match=r"spec\.ports: the Service exposes no port"):
        spec_from_service(service)


def test_every_documented_annotation_is_accepted() -> None:
    documented = (Path(__file__).parents[2] / "registry" / "k8s_services.py").read_text()
    assert all(f"    {name} " in documented for name in ANNOTATIONS)
