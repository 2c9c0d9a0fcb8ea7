"""Router metrics: classification, quality-cost curves, and the baselines a router must beat.

Classification: `accuracy`, `macro_f1`, `confusion_matrix`.

Quality-cost curves (one point per operating point: average cost, average quality):

* `aiq` -- RouterBench's Average Improvement in Quality (Hu et al. 2024, "RouterBench: A
  Benchmark for Multi-LLM Routing System", arXiv:2403.12031, Sec. 3): the mean quality of the
  router's non-decreasing convex hull over a cost range, AIQ = 1/(c_max-c_min) * integral of
  hull(c) dc. The hull is the upper concave envelope of the points, cut at its best point and
  flat after it (paying more never has to lower quality: RouterBench mixes two routers' points).
* `apgr` -- RouteLLM's Average Performance Gap Recovered (Ong et al. 2024, "RouteLLM: Learning
  to Route LLMs with Preference Data", arXiv:2406.18665, Sec. 5.1; `routellm/evals/evaluate.py`
  `apgr_metric`): PGR = (q - q_weak) / (q_strong - q_weak); APGR is its trapezoid area over the
  share of strong-model calls in [0, 1], i.e. (AUC - q_weak) / (q_strong - q_weak) over [0, 1].
* `cpt` -- RouteLLM's Call-Performance Threshold: CPT(x) is the smallest share of strong-model
  calls at which the router's curve reaches PGR = x (linear interpolation between points).

Baselines (`baseline_points`): best single expert, cheapest expert, random expert, and the
oracle (a best-scoring expert per query, the cheapest among ties).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "CurvePoint",
    "accuracy",
    "aiq",
    "apgr",
    "baseline_points",
    "confusion_matrix",
    "cost_at_quality",
    "cpt",
    "macro_f1",
    "non_decreasing_convex_hull",
    "routed_point",
]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def accuracy(y_true: Sequence[int] | Ints, y_pred: Sequence[int] | Ints) -> float:
    true, pred = np.asarray(y_true), np.asarray(y_pred)
    if true.shape != pred.shape or true.size == 0:
        raise ValueError("y_true and y_pred must be non-empty and of equal length")
    return float(np.mean(true == pred))


def confusion_matrix(
    y_true: Sequence[int] | Ints, y_pred: Sequence[int] | Ints, n_classes: int
) -> Ints:
    """counts[i, j] = queries of true class i predicted as class j."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return counts


def macro_f1(y_true: Sequence[int] | Ints, y_pred: Sequence[int] | Ints, n_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes that occur in y_true or y_pred."""
    counts = confusion_matrix(y_true, y_pred, n_classes).astype(np.float64)
    tp = np.diag(counts)
    predicted, actual = counts.sum(axis=0), counts.sum(axis=1)
    present = (predicted + actual) > 0
    denom = predicted + actual
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1[present].mean()) if present.any() else 0.0


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """One operating point: mean cost and mean quality per query, with what produced it."""

    cost: float
    quality: float
    label: str = ""
    param: float | None = None


def routed_point(
    scores: Floats, costs: Floats, choice: Ints, *, label: str = "", param: float | None = None
) -> CurvePoint:
    """The point of sending query i to expert choice[i] (NaN scores count as 0)."""
    rows = np.arange(len(choice))
    picked = np.nan_to_num(scores[rows, choice], nan=0.0)
    return CurvePoint(float(costs[rows, choice].mean()), float(picked.mean()), label, param)


def non_decreasing_convex_hull(costs: Floats, qualities: Floats) -> tuple[Floats, Floats]:
    """Vertices (sorted by cost) of the upper concave envelope, up to its best point."""
    order = np.lexsort((-np.asarray(qualities), np.asarray(costs)))
    pts = [(float(costs[i]), float(qualities[i])) for i in order]
    hull: list[tuple[float, float]] = []
    for c, q in pts:
        if hull and c == hull[-1][0]:
            continue  # same cost: the first (highest quality) one is kept
        while len(hull) >= 2:
            (c1, q1), (c2, q2) = hull[-2], hull[-1]
            if (q2 - q1) * (c - c1) <= (q - q1) * (c2 - c1):  # hull[-1] on or under the chord
                hull.pop()
            else:
                break
        hull.append((c, q))
    best = int(np.argmax([q for _, q in hull]))
    kept = hull[: best + 1]
    return np.array([c for c, _ in kept]), np.array([q for _, q in kept])


def _hull_value(hc: Floats, hq: Floats, grid: Floats) -> Floats:
    """The hull as a function of cost: flat at its best quality beyond its last vertex, and
    flat at its first vertex's quality below the cheapest point."""
    return np.asarray(np.interp(grid, hc, hq), dtype=np.float64)


def aiq(costs: Floats, qualities: Floats, c_min: float, c_max: float) -> float:
    """RouterBench AIQ of the points over [c_min, c_max] (see the module docstring)."""
    if not c_max > c_min:
        raise ValueError("c_max must exceed c_min")
    hc, hq = non_decreasing_convex_hull(np.asarray(costs, float), np.asarray(qualities, float))
    grid = np.union1d(np.linspace(c_min, c_max, 1001), hc[(hc > c_min) & (hc < c_max)])
    values = _hull_value(hc, hq, grid)
    area = float(np.sum((values[1:] + values[:-1]) * np.diff(grid)) / 2.0)
    return area / (c_max - c_min)


def apgr(
    strong_share: Floats, qualities: Floats, weak_quality: float, strong_quality: float
) -> float:
    """RouteLLM APGR of a curve given as (share of strong calls in [0,1], quality) points.

    The points are sorted by share and integrated with the trapezoid rule over the shares they
    span (RouteLLM evaluates 10 thresholds from 0 % to 100 % strong calls, then divides by the
    same integral of the flat weak and strong lines, which is what this does).
    """
    order = np.argsort(strong_share, kind="stable")
    x, q = np.asarray(strong_share, float)[order], np.asarray(qualities, float)[order]
    span = float(x[-1] - x[0])
    if span <= 0 or strong_quality == weak_quality:
        raise ValueError("need points spanning a range of strong shares, and q_strong != q_weak")
    auc = float(np.sum((q[1:] + q[:-1]) * np.diff(x)) / 2.0)
    return (auc / span - weak_quality) / (strong_quality - weak_quality)


def cost_at_quality(costs: Floats, qualities: Floats, target: float) -> float | None:
    """The least cost at which the curve (points joined in cost order) reaches `target`."""
    order = np.argsort(costs, kind="stable")
    c, q = np.asarray(costs, float)[order], np.asarray(qualities, float)[order]
    if q[0] >= target:
        return float(c[0])
    for i in range(1, len(c)):
        if q[i] >= target:
            if q[i] == q[i - 1]:
                return float(c[i])
            t = (target - q[i - 1]) / (q[i] - q[i - 1])
            return float(c[i - 1] + t * (c[i] - c[i - 1]))
    return None


def cpt(
    strong_share: Floats,
    qualities: Floats,
    weak_quality: float,
    strong_quality: float,
    fraction: float,
) -> float | None:
    """RouteLLM CPT(fraction): strong-call share needed to recover `fraction` of the gap."""
    target = weak_quality + fraction * (strong_quality - weak_quality)
    return cost_at_quality(strong_share, qualities, target)


def baseline_points(scores: Floats, costs: Floats, experts: Sequence[str]) -> list[CurvePoint]:
    """Best single expert, cheapest expert, random expert and oracle on these outcomes.

    Missing scores (NaN) count as 0. The oracle sends each query to the cheapest of the experts
    with the best score on it.
    """
    filled = np.nan_to_num(scores, nan=0.0)
    mean_q, mean_c = filled.mean(axis=0), costs.mean(axis=0)
    best = int(np.argmax(mean_q))
    cheapest = int(np.lexsort((-mean_q, mean_c))[0])
    top = filled.max(axis=1, keepdims=True)
    masked_cost = np.where(filled >= top, costs, np.inf)
    oracle = np.argmin(masked_cost, axis=1).astype(np.int64)
    oracle_point = routed_point(filled, costs, oracle, label="oracle")
    return [
        CurvePoint(float(mean_c[best]), float(mean_q[best]), f"best single ({experts[best]})"),
        CurvePoint(
            float(mean_c[cheapest]), float(mean_q[cheapest]), f"cheapest ({experts[cheapest]})"
        ),
        CurvePoint(float(mean_c.mean()), float(mean_q.mean()), "random"),
        oracle_point,
    ]
