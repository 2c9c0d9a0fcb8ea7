"""From predicted quality to a choice, at serving time.

    choose(q, c, lam)            expert per query = argmax_e q[i, e] - lam * c[i, e]
    adaptive_top_k(p, mass)      experts in order of probability until their cumulative
                                 probability reaches `mass` (1 for easy queries, several for hard)

The cost weight lam is chosen at training time (`routers.training.operating`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["adaptive_top_k", "choose"]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def choose(quality: Floats, costs: Floats, cost_weight: float) -> Ints:
    """argmax of quality - cost_weight * cost per row; ties go to the cheaper, then the first."""
    c = np.broadcast_to(np.asarray(costs, dtype=np.float64), quality.shape)
    utility = quality - cost_weight * c
    best = utility.max(axis=1, keepdims=True)
    tied = utility >= best - 1e-12
    return np.asarray(np.argmin(np.where(tied, c, np.inf), axis=1), dtype=np.int64)


def adaptive_top_k(probs: Floats, mass: float, *, max_k: int | None = None) -> Ints:
    """How many experts to take per row: the fewest, in descending probability, whose
    cumulative probability reaches `mass` (at least 1, at most `max_k`)."""
    if not 0.0 < mass <= 1.0:
        raise ValueError("mass must be in (0, 1]")
    p = np.atleast_2d(np.asarray(probs, dtype=np.float64))
    ordered = -np.sort(-p, axis=1)
    cumulative = np.cumsum(ordered, axis=1)
    k = (cumulative < mass - 1e-12).sum(axis=1) + 1
    k = np.minimum(k, p.shape[1])
    if max_k is not None:
        k = np.minimum(k, max_k)
    return np.asarray(k, dtype=np.int64)
