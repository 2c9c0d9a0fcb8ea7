"""Reciprocal-rank fusion of ranked lists (Cormack, Clarke & Buettcher, SIGIR 2009).

    score(d) = sum over lists L containing d of 1 / (RRF_K + rank_L(d)),  rank from 1

Why RRF rather than fusing normalised scores: BM25 scores are unbounded and their scale changes
with every query (length, idf of its words), while cosines sit in a narrow band near 0.2-0.7;
min-max or z-score normalisation makes the fused ranking depend on the outliers and on how deep
each list was cut. RRF uses ranks only, needs no tuning per corpus (k=60 is the published
default that ranx and Elasticsearch also use), and is the standard baseline that learned
fusion must beat. Ties are broken by the order of first appearance, so the result is
deterministic.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

__all__ = ["RRF_K", "reciprocal_rank_fusion"]

RRF_K = 60
Item = TypeVar("Item", bound=Hashable)


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[Item]],
    *,
    k: int = RRF_K,
    weights: Sequence[float] | None = None,
) -> list[tuple[Item, float]]:
    """(item, fused score) for every item of `rankings` (each best first), best first.
    `weights` (one per ranking, default 1) scale each ranking's contributions: weighted RRF, as
    the gateway fuses several domains' results by the router's probabilities."""
    scores: dict[Item, float] = {}
    for i, ranking in enumerate(rankings):
        weight = 1.0 if weights is None else weights[i]
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])
