"""Kubernetes Services -> expert specs: the labels and annotations discovery reads.

A Service becomes an expert when it carries the label ``coe.io/expert: <expert name>``. Its
annotations say what the expert is; every one is optional::

    coe.io/kind             vllm (default) | openai | retriever
    coe.io/model            upstream model id or LoRA adapter (openai: required)
    coe.io/categories       router categories, comma-separated ("math, physics" or "*")
    coe.io/exemplars        example queries, a JSON list of strings
    coe.io/cost             relative cost per request (a number)
    coe.io/timeout-s        read timeout per request, seconds
    coe.io/max-concurrency  requests in flight to this expert, at most
    coe.io/api-key-env      environment variable holding the upstream API key
    coe.io/system-prompt    prepended when a request has no system message
    coe.io/enabled          true | false
    coe.io/options          kind-specific options, a JSON object
    coe.io/port             port name or number (default: the port named http, else the first)
    coe.io/scheme           http (default) | https
    coe.io/path             URL path of the API (default /v1; a retriever's: none)
    coe.io/endpoint         the whole base URL, instead of <scheme>://<svc>.<ns>.svc:<port><path>

An annotation under ``coe.io/`` that is not in this list is an error (a typo would otherwise be
silently ignored), as is a value that does not parse: `ServiceError` names the Service and the
annotation.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from registry.spec import ExpertKind, ExpertSpec

__all__ = [
    "ANNOTATIONS",
    "EXPERT_LABEL",
    "MANAGED_PREFIX",
    "ServiceError",
    "managed_by",
    "service_key",
    "spec_from_service",
]

EXPERT_LABEL = "coe.io/expert"
MANAGED_PREFIX = "kubernetes:"
"""`ExpertSpec.managed_by` of a discovered expert: ``kubernetes:<namespace>/<service>``."""
_PREFIX = "coe.io/"
_DISCOVERED_KINDS = (ExpertKind.VLLM, ExpertKind.OPENAI, ExpertKind.RETRIEVER)


class ServiceError(ValueError):
    """A labelled Service that does not describe a valid expert."""

    def __init__(self, service: str, field: str, message: str) -> None:
        super().__init__(f"Service {service}: {field}: {message}")
        self.service = service
        self.field = field


def managed_by(namespace: str, name: str) -> str:
    """The owner mark of the expert a Service defines."""
    return f"{MANAGED_PREFIX}{namespace}/{name}"


def service_key(service: Mapping[str, Any]) -> str:
    """``<namespace>/<name>`` of a Service object (a dict as the API serves it)."""
    meta = service.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _text(value: str) -> str:
    return value


def _number(value: str) -> float:
    return float(value)


def _integer(value: str) -> int:
    return int(value)


def _boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError("expected true or false")
    return lowered == "true"


def _categories(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _json_list(value: str) -> list[str]:
    parsed = json.loads(value)
    if not isinstance(parsed, list) or not all(isinstance(item, str) for item in parsed):
        raise ValueError("expected a JSON list of strings")
    return parsed


def _json_object(value: str) -> dict[str, Any]:
    parsed = json.loads(value)
    if not isinstance(parsed, dict):
        raise ValueError("expected a JSON object")
    return parsed


_SPEC_FIELDS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "kind": ("kind", _text),
    "model": ("model", _text),
    "categories": ("categories", _categories),
    "exemplars": ("exemplars", _json_list),
    "cost": ("cost", _number),
    "timeout-s": ("timeout_s", _number),
    "max-concurrency": ("max_concurrency", _integer),
    "api-key-env": ("api_key_env", _text),
    "system-prompt": ("system_prompt", _text),
    "enabled": ("enabled", _boolean),
    "options": ("options", _json_object),
}
_URL_PARTS = ("port", "scheme", "path", "endpoint")
ANNOTATIONS = tuple(_PREFIX + key for key in (*_SPEC_FIELDS, *_URL_PARTS))


def spec_from_service(service: Mapping[str, Any]) -> ExpertSpec:
    """The expert a labelled Service describes; `ServiceError` names what is wrong."""
    meta = service.get("metadata") or {}
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    where = f"{namespace}/{name}"
    expert = (meta.get("labels") or {}).get(EXPERT_LABEL)
    if not expert:
        raise ServiceError(where, f"label {EXPERT_LABEL}", "missing")
    notes = {
        key[len(_PREFIX) :]: str(value)
        for key, value in (meta.get("annotations") or {}).items()
        if key.startswith(_PREFIX)
    }
    unknown = sorted(set(notes) - set(_SPEC_FIELDS) - set(_URL_PARTS))
    if unknown:
        raise ServiceError(
            where, _PREFIX + unknown[0], f"unknown annotation; known: {', '.join(ANNOTATIONS)}"
        )
    fields: dict[str, Any] = {"name": expert, "kind": ExpertKind.VLLM.value}
    for key, (field, parse) in _SPEC_FIELDS.items():
        if key in notes:
            try:
                fields[field] = parse(notes[key])
            except ValueError as exc:
                raise ServiceError(where, _PREFIX + key, str(exc)) from exc
    if fields["kind"] not in {kind.value for kind in _DISCOVERED_KINDS}:
        kinds = ", ".join(kind.value for kind in _DISCOVERED_KINDS)
        raise ServiceError(where, _PREFIX + "kind", f"{fields['kind']!r}: one of {kinds}")
    fields["endpoint"] = notes.get("endpoint") or _endpoint(service, notes, fields["kind"], where)
    fields["managed_by"] = managed_by(namespace, name)
    try:
        return ExpertSpec.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "spec"
        raise ServiceError(where, field, first["msg"]) from exc


def _endpoint(service: Mapping[str, Any], notes: Mapping[str, str], kind: str, where: str) -> str:
    meta = service.get("metadata") or {}
    ports = list((service.get("spec") or {}).get("ports") or [])
    port = _port(ports, notes.get("port"), where)
    scheme = notes.get("scheme", "http")
    if scheme not in ("http", "https"):
        raise ServiceError(where, _PREFIX + "scheme", f"{scheme!r}: http or https")
    default_path = "" if kind == ExpertKind.RETRIEVER.value else "/v1"
    path = notes.get("path", default_path)
    if path and not path.startswith("/"):
        raise ServiceError(where, _PREFIX + "path", f"{path!r} must start with '/'")
    host = f"{meta.get('name')}.{meta.get('namespace')}.svc"
    return f"{scheme}://{host}:{port}{path.rstrip('/')}"


def _port(ports: list[Mapping[str, Any]], wanted: str | None, where: str) -> int:
    if not ports:
        raise ServiceError(where, "spec.ports", "the Service exposes no port")
    if wanted is None:
        named = [p for p in ports if p.get("name") == "http"]
        return int((named or ports)[0]["port"])
    for port in ports:
        if wanted in (str(port.get("name")), str(port.get("port"))):
            return int(port["port"])
    raise ServiceError(where, _PREFIX + "port", f"{wanted!r} is not a port of the Service")
