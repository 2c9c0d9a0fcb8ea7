"""The metrics `train` stores in a manifest and `evaluate` prints, as plain JSON-ready dicts.

`classification_metrics`: accuracy, macro-F1, confusion matrix, expected calibration error.
`outcome_metrics`: the artifact's operating point, the quality-cost curve of its cost-weight
sweep with AIQ / APGR / CPT(50 %) / CPT(80 %), and the baselines (best single, cheapest,
random, oracle, and the CoE category map fitted on the training rows and applied with the true
category of each query).

APGR and CPT generalise RouteLLM's strong/weak pair to N experts: "weak" is the cheapest
expert, "strong" the best single one, and the x axis is the cost normalised between the two,
(cost - cost_weak) / (cost_strong - cost_weak); with costs 0 and 1 this is RouteLLM's share of
strong-model calls. The curve is extended flat to x = 1 from its last point within [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from routers.classifiers import Queries
from routers.probability import softmax
from routers.selection import choose
from routers.trained_model import TrainedModel
from routers.training.calibration import expected_calibration_error
from routers.training.datasets import RoutingOutcomes
from routers.training.evaluation import (
    CurvePoint,
    accuracy,
    aiq,
    apgr,
    baseline_points,
    confusion_matrix,
    cpt,
    macro_f1,
    routed_point,
)
from routers.training.fit_coe import fit_coe_map
from routers.training.operating import cost_weight_grid, sweep

__all__ = [
    "classification_metrics",
    "coe_baseline",
    "curve_metrics",
    "outcome_metrics",
    "point_json",
]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def classification_metrics(
    logits: Floats, labels: Ints, label_set: Sequence[str], temperature: float
) -> dict[str, Any]:
    probs = softmax(logits / temperature)
    raw = softmax(logits)
    pred = probs.argmax(axis=1)
    n = len(label_set)
    return {
        "accuracy": accuracy(labels, pred),
        "macro_f1": macro_f1(labels, pred, n),
        "ece": expected_calibration_error(probs, labels),
        "ece_uncalibrated": expected_calibration_error(raw, labels),
        "temperature": temperature,
        "labels": list(label_set),
        "confusion": confusion_matrix(labels, pred, n).tolist(),
    }


def point_json(point: CurvePoint) -> dict[str, Any]:
    return {
        "cost": point.cost,
        "quality": point.quality,
        "label": point.label,
        "param": point.param,
    }


def _normalised(
    points: Sequence[CurvePoint], weak: CurvePoint, strong: CurvePoint
) -> tuple[Floats, Floats]:
    span = strong.cost - weak.cost
    x = np.array([(p.cost - weak.cost) / span for p in points])
    q = np.array([p.quality for p in points])
    keep = (x >= -1e-9) & (x <= 1 + 1e-9)
    x, q = np.clip(x[keep], 0.0, 1.0), q[keep]
    order = np.argsort(x, kind="stable")
    x, q = x[order], q[order]
    if len(x) and x[-1] < 1.0:
        x, q = np.append(x, 1.0), np.append(q, q[-1])
    return x, q


def curve_metrics(
    points: Sequence[CurvePoint], scores: Floats, costs: Floats, experts: Sequence[str]
) -> dict[str, Any]:
    """AIQ over [cheapest, most expensive expert]; APGR and CPT against cheapest vs best."""
    base = baseline_points(scores, costs, experts)
    strong, weak = base[0], base[1]
    mean_costs = costs.mean(axis=0)
    c = np.array([p.cost for p in points])
    q = np.array([p.quality for p in points])
    lo, hi = float(mean_costs.min()), float(mean_costs.max())
    out: dict[str, Any] = {
        "aiq": aiq(c, q, lo, hi) if hi > lo else None,  # undefined when every expert costs the same
        "weak": point_json(weak),
        "strong": point_json(strong),
    }
    if strong.cost > weak.cost and strong.quality > weak.quality:
        x, qn = _normalised(points, weak, strong)
        if len(x) >= 2 and x[-1] > x[0]:
            out["apgr"] = apgr(x, qn, weak.quality, strong.quality)
            for frac in (0.5, 0.8):
                share = cpt(x, qn, weak.quality, strong.quality, frac)
                out[f"cpt{int(frac * 100)}"] = share
                out[f"cpt{int(frac * 100)}_cost"] = (
                    None if share is None else weak.cost + share * (strong.cost - weak.cost)
                )
    return out


def coe_baseline(train: RoutingOutcomes, dev: RoutingOutcomes) -> list[CurvePoint]:
    """The CoE map fitted on the training rows at a sweep of cost weights, applied with the
    true category of each dev query."""
    assert train.labels is not None and dev.labels is not None
    cats = tuple(sorted(set(train.labels) | set(dev.labels)))
    points = []
    for w in cost_weight_grid(train.costs, 41):
        coe = fit_coe_map(
            train.labels,
            train.scores,
            train.costs,
            train.experts,
            categories=cats,
            cost_weight=float(w),
        )
        probs = np.zeros((len(dev), len(cats)))
        probs[np.arange(len(dev)), [cats.index(label) for label in dev.labels]] = 1.0
        points.append(
            routed_point(
                dev.scores,
                dev.costs,
                coe.route(probs),
                label="coe-map (true category)",
                param=float(w),
            )
        )
    return points


def outcome_metrics(
    model: TrainedModel,
    data: RoutingOutcomes,
    vectors: npt.NDArray[np.floating],
    *,
    train: RoutingOutcomes | None = None,
) -> dict[str, Any]:
    """The artifact at its operating point and along its cost-weight sweep, on `data`
    (`vectors`: the embeddings of its texts)."""
    assert model.expert_costs is not None
    quality = model.expert_quality(Queries(data.texts, vectors))
    filled = data.filled_scores()
    chosen = choose(quality, model.expert_costs, model.selection.cost_weight)
    at = routed_point(
        filled, data.costs, chosen, label="operating point", param=model.selection.cost_weight
    )
    usage = np.bincount(chosen, minlength=len(data.experts)) / max(len(chosen), 1)
    curve = sweep(quality, model.expert_costs, filled, realised_costs=data.costs, label="router")
    result: dict[str, Any] = {
        "operating_point": point_json(at),
        "usage": {e: float(u) for e, u in zip(data.experts, usage, strict=True) if u > 0},
        "cost_unit": data.cost_unit,
        "curve": [point_json(p) for p in curve],
        **curve_metrics(curve, filled, data.costs, data.experts),
        "baselines": [point_json(p) for p in baseline_points(filled, data.costs, data.experts)],
    }
    if train is not None and train.labels is not None and data.labels is not None:
        coe_points = coe_baseline(train, data)
        result["coe_map_true_category"] = {
            "curve": [point_json(p) for p in coe_points],
            **curve_metrics(coe_points, filled, data.costs, data.experts),
        }
    return result
