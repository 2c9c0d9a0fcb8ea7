"""Index artifacts: router artifacts (`routers.artifact`) of the `index` family.

    my-index/
      manifest.json   kind "index/dense" | "index/lexical" | "index/hybrid", embedder_id,
                      data_hash (the corpus file's SHA-256), created (build time), params
                      (doc_count, pilot_texts, pilots, corpus, tokenizer, ...), metrics
                      (build_seconds), and the name/shape/dtype and SHA-256 of every array
      weights.npz     vectors, BM25 matrix, vocabulary, passages, pilots (no pickle)

Writing, hashing and validation are `routers.artifact`'s (`save_artifact`, `load_artifact`,
`read_manifest`); this module adds what makes such an artifact an index: the family and kind,
a positive `params.doc_count`, and `params.pilot_texts` (one text per pilot: the document
nearest each centroid, or the sample queries given to `build_index`), readable without loading
the index (`read_pilot_texts`).

Every failure is an `IndexArtifactError` (a `routers.artifact.ArtifactError`) whose message
starts with the directory or file at fault.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy.typing as npt

from routers.artifact import (
    MANIFEST_FILE,
    ArtifactError,
    ArtifactFamily,
    Manifest,
    load_artifact,
    read_manifest,
    save_artifact,
)

__all__ = [
    "FAMILY",
    "IndexArtifactError",
    "IndexKind",
    "IndexManifest",
    "load_index_artifact",
    "read_index_manifest",
    "read_pilot_texts",
    "save_index_artifact",
]

FAMILY = ArtifactFamily.INDEX
Arrays = Mapping[str, npt.NDArray[Any]]


class IndexArtifactError(ArtifactError):
    """An index directory that cannot be loaded: missing, corrupt, another version or embedder."""


class IndexKind(enum.StrEnum):
    """How an index searches its passages."""

    DENSE = "dense"
    """Cosine similarity of the embedder's vectors (faiss `IndexFlatIP`, exact)."""
    LEXICAL = "lexical"
    """BM25 (bm25s) over lower-cased word tokens, English stopwords removed."""
    HYBRID = "hybrid"
    """Both, fused by reciprocal rank (see `experts.retrieval.fusion`)."""


@dataclass(frozen=True)
class IndexManifest:
    """A validated index manifest: the router `Manifest` and what it says about the index."""

    manifest: Manifest
    kind: IndexKind = field(init=False)
    doc_count: int = field(init=False)
    pilot_texts: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        m = self.manifest
        kinds = ", ".join(k.value for k in IndexKind)
        if m.family is not FAMILY or m.kind not in set(IndexKind):
            raise ValueError(f"'kind' {m.tag!r} is not an index ({FAMILY}/{{{kinds}}})")
        doc_count = m.params.get("doc_count")
        if doc_count is None:
            raise ValueError("missing 'doc_count' in 'params'")
        if isinstance(doc_count, bool) or not isinstance(doc_count, int) or doc_count < 1:
            raise ValueError(f"'doc_count' must be a positive integer, not {doc_count!r}")
        texts = m.params.get("pilot_texts")
        if texts is None:
            raise ValueError("missing 'pilot_texts' in 'params'")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError("'pilot_texts' must be a non-empty list of strings")
        object.__setattr__(self, "kind", IndexKind(m.kind))
        object.__setattr__(self, "doc_count", doc_count)
        object.__setattr__(self, "pilot_texts", tuple(texts))

    @classmethod
    def create(
        cls,
        kind: IndexKind,
        *,
        embedder_id: str,
        data_hash: str,
        doc_count: int,
        pilot_texts: tuple[str, ...],
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
    ) -> IndexManifest:
        """A manifest to write (`ValueError` if it would not be a valid index manifest)."""
        all_params = dict(params or {}) | {"doc_count": doc_count, "pilot_texts": [*pilot_texts]}
        return cls(
            Manifest(
                FAMILY,
                IndexKind(kind).value,
                embedder_id=embedder_id,
                data_hash=data_hash,
                params=all_params,
                metrics=dict(metrics or {}),
            )
        )

    @property
    def tag(self) -> str:
        return self.manifest.tag

    @property
    def embedder_id(self) -> str:
        return self.manifest.embedder_id

    @property
    def data_hash(self) -> str:
        return self.manifest.data_hash

    @property
    def params(self) -> dict[str, Any]:
        return self.manifest.params

    @property
    def metrics(self) -> dict[str, Any]:
        return self.manifest.metrics

    @property
    def created(self) -> str:
        return self.manifest.created

    def to_json(self) -> dict[str, Any]:
        """The manifest file's content."""
        return self.manifest.to_json()

    def summary(self) -> dict[str, Any]:
        """What a client needs to know about the index (no array descriptions or hashes)."""
        return {
            "kind": self.tag,
            "index": self.kind.value,
            "embedder_id": self.embedder_id,
            "data_hash": self.data_hash,
            "doc_count": self.doc_count,
            "pilot_texts": list(self.pilot_texts),
            "params": {k: v for k, v in self.params.items() if k != "pilot_texts"},
            "metrics": self.metrics,
            "created": self.created,
            "format_version": self.manifest.format_version,
        }


def _index_manifest(manifest: Manifest, where: str) -> IndexManifest:
    try:
        return IndexManifest(manifest)
    except ValueError as exc:
        raise IndexArtifactError(f"{where}: {exc}") from exc


def save_index_artifact(directory: Path, manifest: IndexManifest, arrays: Arrays) -> IndexManifest:
    """Write `arrays` then `manifest` into `directory` (`routers.artifact.save_artifact`);
    returns the manifest as written (`created`, array descriptions and weights hash filled)."""
    try:
        written = save_artifact(directory, manifest.manifest, arrays)
    except ArtifactError as exc:
        raise IndexArtifactError(f"{directory}: {exc}") from exc
    return _index_manifest(written, str(directory / MANIFEST_FILE))


def read_index_manifest(directory: Path) -> IndexManifest:
    """The validated manifest alone (cheap: to list indexes or to notice a rebuilt one)."""
    if not directory.is_dir():
        raise IndexArtifactError(f"{directory}: no such index directory")
    if not (directory / MANIFEST_FILE).exists():
        raise IndexArtifactError(f"{directory}: no {MANIFEST_FILE} (not an index)")
    try:
        manifest = read_manifest(directory)
    except ArtifactError as exc:
        raise IndexArtifactError(str(exc)) from exc
    return _index_manifest(manifest, str(directory / MANIFEST_FILE))


def read_pilot_texts(directory: Path) -> tuple[str, ...]:
    """The index's pilot texts (exemplars for routing), from its manifest alone: neither the
    weights nor faiss/bm25s are loaded. `IndexArtifactError` if the manifest is unusable."""
    return read_index_manifest(directory).pilot_texts


def load_index_artifact(directory: Path) -> tuple[IndexManifest, dict[str, npt.NDArray[Any]]]:
    """The manifest and arrays of an index, after `routers.artifact.load_artifact`'s checks
    (SHA-256, array names, shapes and dtypes)."""
    read_index_manifest(directory)  # an index's own messages for a missing or foreign manifest
    try:
        manifest, arrays = load_artifact(directory)
    except ArtifactError as exc:
        raise IndexArtifactError(str(exc)) from exc
    return _index_manifest(manifest, str(directory / MANIFEST_FILE)), arrays
