"""Operating points: the cost weight lam of argmax(quality - lam x cost) that meets a constraint.

    sweep(q, c, scores)          the quality-cost curve over a grid of lam (one CurvePoint each)
    operating_point(curve, ...)  the lam meeting --max-cost (best quality within it) or
                                 --min-quality (cheapest reaching it), picked on held-out rows
    constrained_point(q, c, s)   operating_point over the sweep, then over a fine grid between
                                 the two grid weights that bracket the constraint

RouteLLM calibrates one threshold between two models; `operating_point` does the same for N
experts through the single cost weight lam of the Lagrangian max sum(q) - lam * sum(c).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from routers.selection import choose
from routers.training.evaluation import CurvePoint, routed_point

__all__ = ["constrained_point", "cost_weight_grid", "operating_point", "sweep"]

Floats = npt.NDArray[np.float64]


def cost_weight_grid(costs: Floats, points: int = 161) -> Floats:
    """0 plus a log grid wide enough to go from 'ignore cost' to 'always the cheapest'."""
    scale = float(np.max(np.asarray(costs).mean(axis=0))) if np.size(costs) else 1.0
    scale = scale if scale > 0 else 1.0
    return np.concatenate([[0.0], np.geomspace(1e-4, 1e4, points) / scale])


def sweep(
    quality: Floats,
    costs: Floats,
    scores: Floats,
    cost_weights: Sequence[float] | Floats | None = None,
    *,
    realised_costs: Floats | None = None,
    label: str = "",
) -> list[CurvePoint]:
    """One point (mean cost, mean realised score) per cost weight, in the order given.

    `costs` are what the router knows when it decides (an expert's expected cost, (n_experts,)
    or per query); `realised_costs` (n_queries, n_experts), when given, are what each call
    actually cost (RouterBench's per-query USD depends on the answer's length) and are what the
    points report.
    """
    weights = cost_weight_grid(costs) if cost_weights is None else cost_weights
    decide = np.broadcast_to(np.asarray(costs, dtype=np.float64), quality.shape)
    account = decide if realised_costs is None else realised_costs
    return [
        routed_point(
            scores, account, choose(quality, decide, float(w)), label=label, param=float(w)
        )
        for w in weights
    ]


def operating_point(
    curve: Sequence[CurvePoint],
    *,
    max_cost: float | None = None,
    min_quality: float | None = None,
) -> CurvePoint:
    """The point meeting exactly one constraint, from a curve measured on dev data.

    `max_cost`: the highest quality among points costing at most `max_cost` (then the cheaper).
    `min_quality`: the cheapest point reaching `min_quality` (then the better).
    Raises ValueError when no point meets the constraint.
    """
    if (max_cost is None) == (min_quality is None):
        raise ValueError("give exactly one of max_cost and min_quality")
    if max_cost is not None:
        within = [p for p in curve if p.cost <= max_cost]
        if not within:
            cheapest = min(p.cost for p in curve)
            raise ValueError(f"no operating point costs <= {max_cost:g} (cheapest: {cheapest:g})")
        return max(within, key=lambda p: (p.quality, -p.cost))
    assert min_quality is not None
    reaching = [p for p in curve if p.quality >= min_quality]
    if not reaching:
        best = max(p.quality for p in curve)
        raise ValueError(f"no operating point reaches quality {min_quality:g} (best: {best:g})")
    return min(reaching, key=lambda p: (p.cost, -p.quality))


def constrained_point(
    quality: Floats,
    costs: Floats,
    scores: Floats,
    *,
    max_cost: float | None = None,
    min_quality: float | None = None,
    realised_costs: Floats | None = None,
    refine: int = 48,
) -> CurvePoint:
    """`operating_point` on the sweep of `quality`, refined between grid weights.

    Many queries can switch expert between two neighbouring weights of the coarse grid (onto
    or off one expensive expert at once), so the best point of the grid can sit well inside
    the constraint. The interval between the chosen weight and its neighbour on the far side of
    the constraint is swept again at `refine` log-spaced weights, and the best point of both
    sweeps is returned. Raises ValueError as `operating_point` does.
    """
    weights = cost_weight_grid(costs)
    curve = sweep(quality, costs, scores, weights, realised_costs=realised_costs)
    point = operating_point(curve, max_cost=max_cost, min_quality=min_quality)
    i = next(k for k, p in enumerate(curve) if p is point)
    # max_cost: the smaller (costlier) neighbour broke the budget; min_quality: the larger one
    # (cheaper) fell short of the quality
    j = i - 1 if max_cost is not None else i + 1
    if refine <= 0 or not 0 <= j < len(weights):
        return point
    lo, hi = sorted((float(weights[i]), float(weights[j])))
    lo = lo if lo > 0 else hi * 1e-3
    fine = sweep(
        quality, costs, scores, np.geomspace(lo, hi, refine), realised_costs=realised_costs
    )
    return operating_point([*curve, *fine], max_cost=max_cost, min_quality=min_quality)
