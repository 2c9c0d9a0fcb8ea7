"""`KnnRouter`: a similarity-weighted vote of the k nearest exemplars.

Each of the k exemplars closest to the query votes for its category with weight
exp(cos / temperature) (a softmax over the neighbours' similarities); the votes are summed per
category and normalised. Categories with no neighbour get 0. A large temperature approaches a
plain majority vote, a small one the single nearest exemplar. Ties in similarity are broken
by index order (labels sorted, then exemplar order), so the result is deterministic.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from routers.categories import CategoryIndex, ExemplarRouter, softmax
from routers.embedder import Vectors

__all__ = ["KnnRouter"]


class KnnRouter(ExemplarRouter):
    """Routes to the category most of the query's nearest exemplars belong to."""

    name = "knn"

    def probabilities(
        self, index: CategoryIndex, query: Vectors, similarities: Vectors
    ) -> npt.NDArray[np.float64]:
        k = min(self.config.k, len(similarities))
        nearest = np.argsort(-similarities, kind="stable")[:k]
        weights = softmax(similarities[nearest], self.config.temperature)
        votes = np.bincount(index.owners[nearest], weights, minlength=len(index.labels))
        normalised: npt.NDArray[np.float64] = votes / votes.sum()
        return normalised
