"""A loaded index artifact: passages, dense and/or lexical search, pilot embeddings.

`load_index(directory, embedder)` reads an artifact written by `build_index`, checks it
(manifest, SHA-256, array names/shapes/dtypes, the embedder's id and dimension, the internal
consistency of the BM25 arrays and passage tables) and returns an immutable `Index`, a
`Retriever`. Anything wrong is an `IndexArtifactError` whose message starts with the directory
or file and says what is wrong: missing directory or manifest, corrupt weights, another format
version, an index built with another embedder.

A dense or hybrid index needs the embedder it was built with (queries are embedded); a lexical
one does not, but when an embedder is given it must be the same (the pilots live in its space).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from experts.retrieval.artifact import (
    IndexArtifactError,
    IndexKind,
    IndexManifest,
    load_index_artifact,
)
from experts.retrieval.base import Passage
from experts.retrieval.dense import DenseIndex
from experts.retrieval.fusion import reciprocal_rank_fusion
from experts.retrieval.lexical import LexicalIndex
from experts.retrieval.passages import PassageTable
from routers.embedder import Embedder, Vectors

__all__ = ["HYBRID_DEPTH", "Index", "load_index"]

HYBRID_DEPTH = 100
"""How many results of each side a hybrid search fuses (at least `k`)."""


class Index:
    """One domain's index (see the module docstring); build it with `load_index`."""

    def __init__(
        self,
        directory: Path,
        manifest: IndexManifest,
        arrays: dict[str, npt.NDArray[Any]],
        embedder: Embedder | None,
    ) -> None:
        self.directory = directory
        self.manifest = manifest
        self._embedder = embedder
        count = manifest.doc_count
        self._passages = PassageTable(arrays, count)
        self._pilots = np.asarray(arrays["pilots"], dtype=np.float32)
        self._pilot_weights = np.asarray(arrays["pilot_weights"], dtype=np.float32)
        if self._pilots.ndim != 2 or len(self._pilots) == 0:
            raise ValueError(f"pilots must be a non-empty matrix, not {self._pilots.shape}")
        if self._pilot_weights.shape != (len(self._pilots),):
            raise ValueError("pilot_weights do not match the pilots")
        self._dense: DenseIndex | None = None
        self._lexical: LexicalIndex | None = None
        if manifest.kind in (IndexKind.DENSE, IndexKind.HYBRID):
            vectors = np.asarray(arrays["vectors"], dtype=np.float32)
            if vectors.shape != (count, self._pilots.shape[1]):
                raise ValueError(f"vectors are {vectors.shape}, expected ({count}, dim)")
            self._dense = DenseIndex(vectors)
        if manifest.kind in (IndexKind.LEXICAL, IndexKind.HYBRID):
            self._lexical = LexicalIndex(arrays, count)

    @property
    def kind(self) -> IndexKind:
        return self.manifest.kind

    @property
    def embedder_id(self) -> str:
        return self.manifest.embedder_id

    @property
    def pilots(self) -> Vectors:
        return self._pilots

    @property
    def pilot_texts(self) -> tuple[str, ...]:
        """Texts that stand for the corpus, for routing by exemplars (`IndexManifest`)."""
        return self.manifest.pilot_texts

    @property
    def pilot_weights(self) -> npt.NDArray[np.float32]:
        """The share of the corpus each pilot stands for (sums to 1)."""
        return self._pilot_weights

    def __len__(self) -> int:
        return self.manifest.doc_count

    def search(self, query: str, k: int) -> list[Passage]:
        """At most `k` passages for `query`, best first (the `Retriever` contract)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        if self._dense is not None and self._lexical is not None:
            return self._hybrid(query, k)
        if self._dense is not None:
            scores, rows = self._dense.search(self._embed(query), k)
            return [
                self._passages.passage(int(r), float(s), float(s))
                for r, s in zip(rows, scores, strict=True)
            ]
        assert self._lexical is not None
        scores, rows = self._lexical.search(query, k)
        return [self._passages.passage(int(r), float(s)) for r, s in zip(rows, scores, strict=True)]

    def _hybrid(self, query: str, k: int) -> list[Passage]:
        """RRF of the dense and lexical top `HYBRID_DEPTH`; each passage's `similarity` is its
        cosine to the query (also for those only the lexical side found)."""
        assert self._dense is not None and self._lexical is not None
        depth = max(k, HYBRID_DEPTH)
        vector = self._embed(query)
        dense_scores, dense_rows = self._dense.search(vector, depth)
        _, lexical_rows = self._lexical.search(query, depth)
        fused = reciprocal_rank_fusion([dense_rows.tolist(), lexical_rows.tolist()])[:k]
        cosine = dict(zip(dense_rows.tolist(), dense_scores.tolist(), strict=True))
        missing = [row for row, _ in fused if row not in cosine]
        cosine.update(zip(missing, self._dense.similarities(vector, missing).tolist(), strict=True))
        return [self._passages.passage(row, score, cosine[row]) for row, score in fused]

    def _embed(self, query: str) -> Vectors:
        assert self._embedder is not None  # checked by load_index
        return np.asarray(self._embedder.embed([query])[0], dtype=np.float32)


def load_index(directory: Path, embedder: Embedder | None = None) -> Index:
    """The index in `directory`, checked (module docstring); `IndexArtifactError` otherwise."""
    manifest, arrays = load_index_artifact(directory)
    _check_embedder(directory, manifest, embedder)
    try:
        index = Index(directory, manifest, arrays, embedder)
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise IndexArtifactError(f"{directory}: inconsistent index ({exc})") from exc
    if embedder is not None and index.pilots.shape[1] != embedder.dim:
        raise IndexArtifactError(
            f"{directory}: vectors of dimension {index.pilots.shape[1]}, the embedder "
            f"{embedder.id!r} gives {embedder.dim}"
        )
    return index


def _check_embedder(directory: Path, manifest: IndexManifest, embedder: Embedder | None) -> None:
    if embedder is None:
        if manifest.kind is not IndexKind.LEXICAL:
            raise IndexArtifactError(
                f"{directory}: a {manifest.kind} index needs its embedder "
                f"{manifest.embedder_id!r} to embed queries"
            )
        return
    if embedder.id != manifest.embedder_id:
        raise IndexArtifactError(
            f"{directory}: built with the embedder {manifest.embedder_id!r}, not "
            f"{embedder.id!r}; rebuild it with `coe index build`"
        )
