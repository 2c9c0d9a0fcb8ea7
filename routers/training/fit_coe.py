"""Fit the Composition-of-Experts map (`routers.coe_map.CoeMap`) from outcome data.

`fit_coe_map` solves the multiple-choice knapsack of `routers.coe_map` through its Lagrangian
(f(c) = argmax q - lam * k, `cost_weight`) or, for a target average cost, takes the best
Lagrangian map within the budget and then spends what is left on the upgrades with the best
quality gain per cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from routers.coe_map import CoeMap
from routers.selection import choose
from routers.training.operating import cost_weight_grid

__all__ = ["PRIOR_WEIGHT", "fit_coe_map"]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


PRIOR_WEIGHT = 5.0
"""Pseudo-observations of an expert's overall mean added to each category cell: a cell with
few outcomes leans towards the expert's overall quality instead of a noisy 0 or 1."""


def _tables(
    labels: Sequence[str], scores: Floats, costs: Floats, categories: Sequence[str]
) -> tuple[Floats, Floats, Floats]:
    lab = np.asarray(labels)
    seen = ~np.isnan(scores)
    filled = np.where(seen, scores, 0.0)
    n_cat, n_exp = len(categories), scores.shape[1]
    quality, cost, share = np.zeros((n_cat, n_exp)), np.zeros((n_cat, n_exp)), np.zeros(n_cat)
    overall_q = filled.sum(axis=0) / np.maximum(seen.sum(axis=0), 1)
    overall_c = costs.mean(axis=0)
    for i, category in enumerate(categories):
        rows = lab == category
        share[i] = rows.mean()
        total, count = filled[rows].sum(axis=0), seen[rows].sum(axis=0)
        quality[i] = (total + PRIOR_WEIGHT * overall_q) / (count + PRIOR_WEIGHT)
        cost[i] = costs[rows].mean(axis=0) if rows.any() else overall_c
    return quality, cost, share


def fit_coe_map(
    labels: Sequence[str],
    scores: Floats,
    costs: Floats,
    experts: Sequence[str],
    *,
    categories: Sequence[str] | None = None,
    cost_weight: float | None = None,
    max_cost: float | None = None,
) -> CoeMap:
    """The category -> expert map for a cost weight, or the best one within `max_cost`.

    With neither, the best-quality map (cost weight 0, ties to the cheaper expert).
    Missing scores (NaN) are unknown: each cell is the mean of the observed outcomes, shrunk
    towards the expert's overall mean by `PRIOR_WEIGHT` pseudo-observations.
    """
    if cost_weight is not None and max_cost is not None:
        raise ValueError("give at most one of cost_weight and max_cost")
    cats = tuple(categories) if categories is not None else tuple(sorted(set(labels)))
    quality, cost, share = _tables(labels, scores, costs, cats)
    if max_cost is None:
        assignment = choose(quality, cost, cost_weight or 0.0)
        return CoeMap(cats, tuple(experts), quality, cost, share, assignment)
    rows = np.arange(len(cats))

    def totals(a: Ints) -> tuple[float, float]:
        return float((share * quality[rows, a]).sum()), float((share * cost[rows, a]).sum())

    feasible = [choose(quality, cost, w) for w in cost_weight_grid(cost, 241)]
    feasible = [a for a in feasible if totals(a)[1] <= max_cost + 1e-12]
    if not feasible:
        raise ValueError(f"no category map costs <= {max_cost:g} on this data")
    best = max(feasible, key=lambda a: (totals(a)[0], -totals(a)[1])).copy()
    while True:  # greedy upgrades with the remaining budget
        c0 = totals(best)[1]
        gain = share[:, None] * (quality - quality[rows, best][:, None])
        extra = share[:, None] * (cost - cost[rows, best][:, None])
        ok = (gain > 1e-12) & (c0 + extra <= max_cost + 1e-12)
        if not ok.any():
            break
        ratio = np.where(ok, gain / np.maximum(extra, 1e-12), -np.inf)
        ratio = np.where(ok & (extra <= 0), np.inf, ratio)
        c_idx, e_idx = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
        best[c_idx] = e_idx
    return CoeMap(cats, tuple(experts), quality, cost, share, best)
