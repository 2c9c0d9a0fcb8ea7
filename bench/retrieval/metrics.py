"""nDCG@k and recall@k for one ranked list against graded relevance judgements.

The definitions of trec_eval / ir-measures (`nDCG@10`, `R@100`), written out so the bench needs
no extra package:

* nDCG@k: DCG = sum over the first k results of grade / log2(rank + 1) (linear gain, unjudged
  = 0); divided by the DCG of the judged documents sorted by grade, cut at k. A query without
  any positive judgement is not evaluated (the caller skips it).
* recall@k: the share of the documents judged relevant (grade > 0) found in the first k.

`self_check` recomputes a few hand-worked cases; the routing bench runs it before measuring.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

__all__ = ["ndcg", "recall", "self_check"]

D = TypeVar("D", bound=Hashable)
"""A document key."""


def ndcg(ranking: Sequence[D], grades: Mapping[D, int], k: int = 10) -> float:
    """nDCG@k of `ranking` (best first; repeats count once) against `grades` (doc -> grade)."""
    ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:k]
    if not ideal:
        raise ValueError("no relevant document: nDCG is undefined")
    idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, start=1))
    dcg = sum(
        grades.get(doc, 0) / math.log2(rank + 1)
        for rank, doc in enumerate(_distinct(ranking)[:k], start=1)
        if grades.get(doc, 0) > 0
    )
    return dcg / idcg


def recall(ranking: Sequence[D], grades: Mapping[D, int], k: int = 100) -> float:
    """recall@k of `ranking` against the documents with a positive grade in `grades`."""
    relevant = {doc for doc, g in grades.items() if g > 0}
    if not relevant:
        raise ValueError("no relevant document: recall is undefined")
    return len(relevant.intersection(_distinct(ranking)[:k])) / len(relevant)


def _distinct(ranking: Sequence[D]) -> list[D]:
    return list(dict.fromkeys(ranking))


def self_check() -> None:
    """Hand-worked cases (AssertionError when a definition drifts)."""
    grades = {"a": 3, "b": 1, "c": 2, "z": 0}
    # ideal a(3) c(2) b(1): 3 + 2/log2(3) + 1/2 = 4.761859507142915
    idcg = 3 + 2 / math.log2(3) + 0.5
    assert math.isclose(ndcg(["a", "c", "b"], grades), 1.0)
    # x, a, z, b: 3/log2(3) + 1/log2(5)
    expected = (3 / math.log2(3) + 1 / math.log2(5)) / idcg
    assert math.isclose(ndcg(["x", "a", "z", "b"], grades), expected)
    assert math.isclose(ndcg(["b"] * 3 + ["x"], grades), 1 / idcg)
    assert (
        ndcg([f"x{i}" for i in range(10)] + ["a"], grades) == 0.0
    )  # a at rank 11 is beyond the cut
    assert math.isclose(recall(["c", "x", "a"], grades), 2 / 3)
    assert recall(["a", "b", "c"], grades, k=2) == 2 / 3
    assert recall(["z"], grades) == 0.0
