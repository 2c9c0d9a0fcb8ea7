"""`ExpertSpec`: the registry's record of one expert, validated by pydantic.

A spec holds no secret. An upstream API key is named by `api_key_env` (an environment
variable read when the expert is built), so the registry, its admin API and its logs never
carry the key itself.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["NAME_PATTERN", "ExpertKind", "ExpertSpec", "ExpertSpecPatch"]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
"""Expert names are used in URLs, headers and metric labels: keep them plain."""

Category = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9*][\w .:-]*$")]


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


class ExpertSpec(BaseModel):
    """One expert as the registry stores it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="Unique name; also the pinnable model id.")
    kind: ExpertKind
    endpoint: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]+$",
        description="Base URL of the OpenAI-compatible server, e.g. http://vllm-0:8000/v1.",
    )
    model: str | None = Field(
        default=None,
        max_length=256,
        description="Upstream model id (or LoRA adapter name); for `local`, a path or package id.",
    )
    api_key_env: str | None = Field(
        default=None,
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Name of the environment variable that holds the upstream API key.",
    )
    categories: list[Category] = Field(
        default_factory=list,
        max_length=256,
        description="Router categories this expert serves; '*' serves every category.",
    )
    exemplars: list[Annotated[str, Field(min_length=1, max_length=4000)]] = Field(
        default_factory=list,
        max_length=2000,
        description="Example queries; they define a category named after the expert.",
    )
    cost: float = Field(default=1.0, ge=0, description="Relative cost per request (any unit).")
    timeout_s: float = Field(default=60.0, gt=0, le=3600, description="Read timeout per request.")
    connect_timeout_s: float = Field(default=5.0, gt=0, le=300)
    max_concurrency: int = Field(default=16, ge=1, le=100_000)
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
    """A partial update (`PATCH /admin/experts/{name}`): every field optional, name fixed."""

    model_config = ConfigDict(extra="forbid")

    kind: ExpertKind | None = None
    endpoint: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    categories: list[str] | None = None
    exemplars: list[str] | None = None
    cost: float | None = None
    timeout_s: float | None = None
    connect_timeout_s: float | None = None
    max_concurrency: int | None = None
    enabled: bool | None = None
    system_prompt: str | None = None
    options: dict[str, Any] | None = None

    def apply(self, spec: ExpertSpec) -> ExpertSpec:
        """Return `spec` with the set fields replaced, validated again as a whole."""
        merged = spec.model_dump() | self.model_dump(exclude_unset=True)
        return ExpertSpec.model_validate(merged)
