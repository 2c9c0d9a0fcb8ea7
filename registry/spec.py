"""`ExpertSpec`: the registry's record of one expert, validated by pydantic.

A spec holds no secret. An upstream API key is named by `api_key_env` (an environment
variable read when the expert is built), so the registry, its admin API and its logs never
carry the key itself.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

__all__ = ["NAME_PATTERN", "ExpertKind", "ExpertSpec", "ExpertSpecPatch"]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
"""Expert names are used in URLs, headers and metric labels: keep them plain."""

Category = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9*][\w .:-]*$")]
Exemplar = Annotated[str, Field(min_length=1, max_length=4000)]
ENDPOINT_PATTERN = r"^https?://[^\s]+$"
ENV_PATTERN = r"^[A-Z_][A-Z0-9_]*$"
_CLEARABLE = frozenset(
    {"endpoint", "model", "api_key_env", "system_prompt", "global_max_concurrency"}
)


class ExpertKind(enum.StrEnum):
    """How the gateway talks to an expert."""

    OPENAI = "openai"
    """Any OpenAI-compatible server (`/v1/chat/completions`)."""
    VLLM = "vllm"
    """A vLLM worker: OpenAI API plus model discovery, `/metrics` load and LoRA adapters."""
    LOCAL = "local"
    """An in-process transformers model."""
    SIMULATOR = "simulator"
    """An in-process vLLM-API *simulator* for tests and load benchmarks; never a real model."""
    RETRIEVER = "retriever"
    """A domain retriever: an index directory (`options.index`, built by `coe index build`)
    searched in-process, or an index served over HTTP (`endpoint`, `coe index serve`)."""


def _when(kind: list[str], then: dict[str, Any]) -> dict[str, Any]:
    return {"if": {"properties": {"kind": {"enum": kind}}, "required": ["kind"]}, "then": then}


_URL = {"type": "string", "pattern": ENDPOINT_PATTERN}
_KIND_RULES: dict[str, Any] = {
    "allOf": [  # what `_check_kind` enforces, in the JSON schema too (OpenAPI clients, fuzzers)
        _when(["openai", "vllm"], {"required": ["endpoint"], "properties": {"endpoint": _URL}}),
        _when(
            ["openai"],
            {"required": ["model"], "properties": {"model": {"type": "string", "minLength": 1}}},
        ),
        _when(
            ["retriever"],
            {
                "anyOf": [
                    {"required": ["endpoint"], "properties": {"endpoint": _URL}},
                    {
                        "required": ["options"],
                        "properties": {
                            "options": {
                                "type": "object",
                                "required": ["index"],
                                "properties": {"index": {"type": "string", "minLength": 1}},
                            }
                        },
                    },
                ]
            },
        ),
    ]
}


class ExpertSpec(BaseModel):
    """One expert as the registry stores it."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_KIND_RULES)

    name: str = Field(pattern=NAME_PATTERN, description="Unique name; also the pinnable model id.")
    kind: ExpertKind
    endpoint: str | None = Field(
        default=None,
        pattern=ENDPOINT_PATTERN,
        description="Base URL of the OpenAI-compatible server, e.g. http://vllm-0:8000/v1.",
    )
    model: str | None = Field(
        default=None,
        max_length=256,
        description="Upstream model id (or LoRA adapter name); for `local`, a path or package id.",
    )
    api_key_env: str | None = Field(
        default=None,
        pattern=ENV_PATTERN,
        description="Name of the environment variable that holds the upstream API key.",
    )
    categories: list[Category] = Field(
        default_factory=list,
        max_length=256,
        description="Router categories this expert serves; '*' serves every category.",
    )
    exemplars: list[Exemplar] = Field(
        default_factory=list,
        max_length=2000,
        description="Example queries; they define a category named after the expert.",
    )
    cost: float = Field(default=1.0, ge=0, description="Relative cost per request (any unit).")
    timeout_s: float = Field(default=60.0, gt=0, le=3600, description="Read timeout per request.")
    connect_timeout_s: float = Field(default=5.0, gt=0, le=300)
    max_concurrency: int = Field(
        default=16, ge=1, le=100_000, description="Requests in flight, per gateway process."
    )
    global_max_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Requests in flight over every replica (counted in Redis with the Redis "
        "registry); above it the next candidate is tried, else 429.",
    )
    enabled: bool = True
    system_prompt: str | None = Field(
        default=None,
        max_length=8000,
        description="Prepended as a system message when the request has none.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Kind-specific settings (simulator delays, local generation defaults, ...).",
    )
    managed_by: str | None = Field(
        default=None,
        json_schema_extra={"readOnly": True},
        pattern=r"^[a-z]+:[^\s]{1,300}$",
        description="Set by a discovery source (`kubernetes:<namespace>/<service>`): the source "
        "adds, changes and removes this expert; the admin API does not.",
    )

    @model_validator(mode="after")
    def _check_kind(self) -> ExpertSpec:
        if self.kind in (ExpertKind.OPENAI, ExpertKind.VLLM) and not self.endpoint:
            raise ValueError(f"expert kind {self.kind.value!r} needs an 'endpoint'")
        if self.kind is ExpertKind.OPENAI and not self.model:
            raise ValueError("expert kind 'openai' needs a 'model'")
        if self.kind is ExpertKind.RETRIEVER:
            index = self.options.get("index")
            if not self.endpoint and not (isinstance(index, str) and index):
                raise ValueError(
                    "expert kind 'retriever' needs 'options.index' (an index directory) or an "
                    "'endpoint' (an index served by `coe index serve`)"
                )
        return self


class ExpertSpecPatch(BaseModel):
    """A partial update (`PATCH /admin/experts/{name}`): every field optional, name fixed, each
    with the constraints of `ExpertSpec`. `null` clears a field that may be empty (`endpoint`,
    `model`, `api_key_env`, `system_prompt`) and is refused for the others."""

    model_config = ConfigDict(extra="forbid")

    kind: ExpertKind | SkipJsonSchema[None] = None
    endpoint: Annotated[str, Field(pattern=ENDPOINT_PATTERN)] | None = None
    model: Annotated[str, Field(max_length=256)] | None = None
    api_key_env: Annotated[str, Field(pattern=ENV_PATTERN)] | None = None
    categories: Annotated[list[Category], Field(max_length=256)] | SkipJsonSchema[None] = None
    exemplars: Annotated[list[Exemplar], Field(max_length=2000)] | SkipJsonSchema[None] = None
    cost: Annotated[float, Field(ge=0)] | SkipJsonSchema[None] = None
    timeout_s: Annotated[float, Field(gt=0, le=3600)] | SkipJsonSchema[None] = None
    connect_timeout_s: Annotated[float, Field(gt=0, le=300)] | SkipJsonSchema[None] = None
    max_concurrency: Annotated[int, Field(ge=1, le=100_000)] | SkipJsonSchema[None] = None
    global_max_concurrency: Annotated[int, Field(ge=1, le=100_000)] | None = None
    enabled: bool | SkipJsonSchema[None] = None
    system_prompt: Annotated[str, Field(max_length=8000)] | None = None
    options: dict[str, Any] | SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def _no_null_where_a_value_is_needed(self) -> ExpertSpecPatch:
        for name in self.model_fields_set - _CLEARABLE:
            if getattr(self, name) is None:
                raise ValueError(f"{name} may not be null")
        return self

    def apply(self, spec: ExpertSpec) -> ExpertSpec:
        """Return `spec` with the set fields replaced, validated again as a whole."""
        merged = spec.model_dump() | self.model_dump(exclude_unset=True)
        return ExpertSpec.model_validate(merged)
