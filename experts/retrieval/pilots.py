"""Pilot embeddings: a few centroids that stand for a corpus in the embedder's space.

RouterRetriever routes a query to the domain whose pilot embeddings are closest; a domain is
routable as soon as its index is built, without training anything. `pilot_embeddings` runs a
small spherical k-means (cosine, k-means++ seeding, fixed seed: the same corpus gives the same
pilots) over the documents' vectors and returns the L2-normalised centroids with the share of
documents each one stands for. With `count=1` it is the corpus mean direction.

Their texts (`read_pilot_texts`, from `experts.retrieval.artifact`) are what an exemplar router
uses instead: read from the index's manifest alone.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from experts.retrieval.artifact import read_pilot_texts
from routers.embedder import Vectors

__all__ = ["DEFAULT_PILOTS", "pilot_embeddings", "read_pilot_texts"]

DEFAULT_PILOTS = 8
_ITERATIONS = 25


def _normalise(vectors: npt.NDArray[np.float32]) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def _seed(vectors: Vectors, count: int, rng: np.random.Generator) -> Vectors:
    """k-means++ on cosine distance: each next seed far from those already chosen."""
    chosen = [int(rng.integers(len(vectors)))]
    distance = 1.0 - vectors @ vectors[chosen[0]]
    for _ in range(1, count):
        weights = np.maximum(distance, 0.0)
        total = float(weights.sum())
        if total <= 0.0:  # every vector is already a seed: duplicates left
            break
        pick = int(rng.choice(len(vectors), p=weights / total))
        chosen.append(pick)
        distance = np.minimum(distance, 1.0 - vectors @ vectors[pick])
    return np.asarray(vectors[chosen], dtype=np.float32)


def pilot_embeddings(
    vectors: Vectors, count: int = DEFAULT_PILOTS, *, seed: int = 0
) -> tuple[Vectors, npt.NDArray[np.float32]]:
    """(centroids, weights): at most `count` unit vectors and the fraction of `vectors` nearest
    each (summing to 1). Fewer centroids when the corpus has fewer distinct vectors."""
    if count < 1:
        raise ValueError(f"pilot count must be at least 1, not {count}")
    if len(vectors) == 0:
        raise ValueError("no vectors to summarise")
    units = _normalise(np.asarray(vectors, dtype=np.float32))
    if count == 1:
        return _normalise(units.mean(axis=0, keepdims=True)), np.ones(1, dtype=np.float32)
    centroids = _seed(units, min(count, len(units)), np.random.default_rng(seed))
    assignment = np.zeros(len(units), dtype=np.int64)
    for _ in range(_ITERATIONS):
        assignment = np.argmax(units @ centroids.T, axis=1)
        updated = np.stack(
            [
                units[assignment == c].sum(axis=0) if np.any(assignment == c) else centroids[c]
                for c in range(len(centroids))
            ]
        )
        updated = _normalise(updated)
        if np.allclose(updated, centroids, atol=1e-6):
            break
        centroids = updated
    assignment = np.argmax(units @ centroids.T, axis=1)
    counts = np.bincount(assignment, minlength=len(centroids)).astype(np.float32)
    keep = counts > 0
    return centroids[keep], counts[keep] / counts[keep].sum()
