"""`ExpertSpec` validation and `ExpertSpecPatch.apply`."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from registry import ExpertKind, ExpertSpec, ExpertSpecPatch
from tests.registry.conftest import make_spec


@pytest.mark.parametrize(
    "name", ["a", "qwen2.5-7b", "Code:Llama_13B", "0day", "x" * 64, "lora-adapter.v2:latest"]
)
def test_plain_names_are_accepted(name: str) -> None:
    assert make_spec(name).name == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "-leading-dash",
        ".hidden",
        "has space",
        "slash/name",
        "x" * 65,
        "émoji",
        "a\nb",
        "trailing\n",
        "q?",
    ],
)
def test_names_unfit_for_urls_headers_and_labels_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="name"):
        make_spec(name)


@pytest.mark.parametrize("kind", ["openai", "vllm"])
def test_http_kinds_need_an_endpoint(kind: str) -> None:
    with pytest.raises(ValidationError, match="endpoint"):
        ExpertSpec.model_validate({"name": "a", "kind": kind, "model": "m"})


def test_openai_needs_a_model_and_vllm_does_not() -> None:
    with pytest.raises(ValidationError, match="model"):
        ExpertSpec.model_validate({"name": "a", "kind": "openai", "endpoint": "http://u:8000/v1"})

    vllm = ExpertSpec.model_validate({"name": "a", "kind": "vllm", "endpoint": "http://u/v1"})
    assert vllm.kind is ExpertKind.VLLM
    assert vllm.model is None


@pytest.mark.parametrize("kind", ["local", "simulator"])
def test_in_process_kinds_need_neither(kind: str) -> None:
    assert ExpertSpec.model_validate({"name": "a", "kind": kind}).kind == kind


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kind", "grpc"),
        ("endpoint", "ftp://u/v1"),
        ("api_key_env", "lower_case"),
        ("cost", -1),
        ("timeout_s", 0),
        ("max_concurrency", 0),
        ("categories", ["has/slash"]),
        ("exemplars", [""]),
    ],
)
def test_out_of_range_fields_are_refused_by_name(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=field):
        make_spec("a", **{field: value})


def test_unknown_keys_are_refused_and_named() -> None:
    with pytest.raises(ValidationError, match="api_key") as caught:
        make_spec("a", api_key="sk-not-here")  # a key itself is never stored: api_key_env

    assert caught.value.errors()[0]["type"] == "extra_forbidden"


def test_specs_are_frozen() -> None:
    spec = make_spec("a")
    with pytest.raises(ValidationError):
        spec.cost = 2.0  # type: ignore[misc]


def test_a_spec_round_trips_through_json() -> None:
    spec = make_spec("a", categories=["code", "*"], exemplars=["fix my bug"], options={"t": 1})

    assert ExpertSpec.model_validate_json(spec.model_dump_json()) == spec


def test_patch_apply_replaces_only_the_set_fields() -> None:
    spec = make_spec("a", cost=1.0, categories=["code"], system_prompt="Hi.")

    patched = ExpertSpecPatch(cost=2.0, system_prompt=None).apply(spec)

    assert patched == make_spec("a", cost=2.0, categories=["code"], system_prompt=None)
    assert spec.cost == 1.0  # the original is untouched


def test_patch_apply_validates_the_result_as_a_whole() -> None:
    simulator = make_spec("a", kind="simulator", endpoint=None, model=None)

    with pytest.raises(ValidationError, match="endpoint"):
        ExpertSpecPatch(kind=ExpertKind.OPENAI).apply(simulator)
    with pytest.raises(ValidationError, match="cost"):
        ExpertSpecPatch(cost=-5.0).apply(simulator)

    openai = ExpertSpecPatch(kind=ExpertKind.OPENAI, endpoint="http://u:8000/v1", model="m").apply(
        simulator
    )
    assert openai.kind is ExpertKind.OPENAI


def test_patch_refuses_unknown_keys_and_the_name() -> None:
    with pytest.raises(ValidationError, match="colour"):
        ExpertSpecPatch.model_validate({"colour": "red"})
    with pytest.raises(ValidationError, match="name"):
        ExpertSpecPatch.model_validate({"name": "renamed"})
