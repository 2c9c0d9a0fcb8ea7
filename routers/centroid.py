"""`CentroidRouter`: nearest centroid of each category's exemplars, as probabilities.

P(category) = softmax(cos(query, centroid) / temperature), each centroid being the normalised
mean of the category's exemplar embeddings. Robust when categories have few exemplars, and
categories with many exemplars do not outvote the others.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from routers.categories import CategoryIndex, ExemplarRouter, softmax
from routers.embedder import Vectors

__all__ = ["CentroidRouter"]


class CentroidRouter(ExemplarRouter):
    """Routes to the category whose centroid is closest to the query."""

    name = "centroid"

    def probabilities(
        self, index: CategoryIndex, query: Vectors, similarities: Vectors
    ) -> npt.NDArray[np.float64]:
        return softmax(index.centroids @ query, self.config.temperature)
