"""Dense search: exact inner product over the embedder's unit vectors (faiss `IndexFlatIP`).

A flat index is exact and needs no training, so a rebuilt index answers exactly as numpy
would; at the corpus sizes of one domain (10^3..10^6 passages of 384 floats: 1.5 MB..1.5 GB)
a query is one matrix-vector product. Past that, an IVF or HNSW faiss index would trade
recall for speed behind this same class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from routers.embedder import Vectors

__all__ = ["DenseIndex"]


class DenseIndex:
    """The vectors of a corpus, searchable by cosine (rows are document positions)."""

    def __init__(self, vectors: Vectors) -> None:
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise ValueError(f"dense vectors must be a non-empty matrix, not {vectors.shape}")
        self.dim = int(vectors.shape[1])
        self.count = int(vectors.shape[0])
        import faiss  # here, not at import: `coe serve` without retrievers never loads it

        self._index = faiss.IndexFlatIP(self.dim)
        self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(
        self, query: Vectors, k: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """(scores, rows) of the `k` nearest documents to one query vector, best first."""
        k = min(k, self.count)
        scores, rows = self._index.search(
            np.ascontiguousarray(query.reshape(1, self.dim), dtype=np.float32), k
        )
        keep = rows[0] >= 0
        return (
            np.asarray(scores[0][keep], dtype=np.float32),
            np.asarray(rows[0][keep], dtype=np.int64),
        )

    def similarities(self, query: Vectors, rows: Sequence[int]) -> npt.NDArray[np.float32]:
        """The cosine of one query vector with each of `rows` (any documents, not only the
        nearest)."""
        if not rows:
            return np.empty(0, dtype=np.float32)
        vectors = self._index.reconstruct_batch(np.asarray(rows, dtype=np.int64))
        return np.asarray(vectors @ query.reshape(self.dim), dtype=np.float32)
