"""The Composition-of-Experts map: category -> expert, chosen from outcome data under a budget.

Per category c and expert e the training outcomes give a mean quality q[c, e] and a mean cost
k[c, e]; with category shares w[c], a map f picks one expert per category to

    maximise  sum_c w[c] q[c, f(c)]   subject to   sum_c w[c] k[c, f(c)] <= budget.

This is a multiple-choice knapsack, solved by `routers.training.fit_coe.fit_coe_map`.

At routing time the map uses the classifier's category probabilities p(c | x): the expected
quality of expert e is sum_c p(c | x) q[c, e] (`expected_quality`), so an unsure classifier
blends the categories' tables instead of betting on the top one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["CoeMap"]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class CoeMap:
    """`assignment[c]` = expert index for category c; `quality` / `cost` are (n_cat, n_exp)."""

    categories: tuple[str, ...]
    experts: tuple[str, ...]
    quality: Floats
    cost: Floats
    share: Floats
    assignment: Ints

    def expert_for(self, category: str) -> str:
        return self.experts[int(self.assignment[self.categories.index(category)])]

    def as_dict(self) -> dict[str, str]:
        return {
            c: self.experts[int(e)] for c, e in zip(self.categories, self.assignment, strict=True)
        }

    def expected_cost(self) -> float:
        rows = np.arange(len(self.categories))
        return float((self.share * self.cost[rows, self.assignment]).sum())

    def expected_quality(self, probs: Floats) -> Floats:
        """(n, n_experts) expected quality of each expert under category probabilities."""
        return np.asarray(probs @ self.quality, dtype=np.float64)

    def route(self, probs: Floats) -> Ints:
        """The mapped expert of each row's most probable category."""
        return np.asarray(self.assignment[np.argmax(probs, axis=1)], dtype=np.int64)

    def to_arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "quality": self.quality,
            "cost": self.cost,
            "share": self.share,
            "assignment": self.assignment,
        }

    @classmethod
    def from_arrays(
        cls,
        categories: Sequence[str],
        experts: Sequence[str],
        arrays: Mapping[str, npt.NDArray[Any]],
    ) -> CoeMap:
        return cls(
            tuple(categories),
            tuple(experts),
            np.asarray(arrays["quality"], np.float64),
            np.asarray(arrays["cost"], np.float64),
            np.asarray(arrays["share"], np.float64),
            np.asarray(arrays["assignment"], np.int64),
        )
