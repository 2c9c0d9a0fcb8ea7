"""`evaluate` and `evaluate_baselines`: what `coe eval` runs.

`evaluate` on the data an artifact was trained on (same hash) re-derives the split from the
manifest and scores the dev rows only; on other data it scores every row. Outcomes that carry
no costs take the artifact's expert costs. With `fusion` (none | vote | cascade | adaptive) a
scorer artifact is evaluated as the gateway would apply that fusion policy to the logged answers
(`routers.training.fusion_eval`): `accuracy`, `avg_cost` (summed over the experts called) and
`avg_experts` at the top level. `experts` restricts the pool to those deployed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from routers.artifact import ArtifactFamily, read_manifest
from routers.classifiers import Queries
from routers.embedder import Embedder
from routers.trained_model import TrainedModel, load_model
from routers.training.datasets import RoutingOutcomes
from routers.training.embed_cache import EmbeddingCache
from routers.training.evaluation import baseline_points
from routers.training.fusion_eval import Logged, apply_policy, logged_from, policy_of
from routers.training.report import (
    classification_metrics,
    coe_baseline,
    curve_metrics,
    outcome_metrics,
    point_json,
)
from routers.training.splits import SplitSpec, scorable, split_rows
from routers.training.train import Data, embed_data

__all__ = ["evaluate", "evaluate_baselines"]


def evaluate(
    artifact: Path,
    data: Data,
    embedder: Embedder,
    *,
    cache: EmbeddingCache | None = None,
    fusion: str | None = None,
    k: int = 3,
    experts: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Metrics of the artifact on `data`: its dev rows if it was trained on `data`, else all
    (module docstring)."""
    fused = fusion is not None or experts is not None
    if fused and read_manifest(artifact).family is not ArtifactFamily.SCORER:
        raise ValueError(
            "--fusion and --experts evaluate an expert scorer artifact (heads, mf, "
            "knn-scorer, coe), which ranks experts; this one classifies categories"
        )
    model = load_model(artifact)
    if isinstance(data, RoutingOutcomes) and model.expert_costs is not None:
        if not data.costs_given:
            costs = dict(zip(model.manifest.experts, model.expert_costs.tolist(), strict=True))
            data = data.with_expert_costs(costs)
        data = data.select_experts(model.manifest.experts)
    rows = np.arange(len(data), dtype=np.int64)
    where = "all rows"
    if data.data_hash() == model.manifest.data_hash:
        where = "dev split"
        rows = split_rows(data, SplitSpec.from_json(model.manifest.params["split"])).dev
    if model.manifest.params.get("missing_as_failure") and isinstance(data, RoutingOutcomes):
        data = replace(data, scores=data.filled_scores())
    if model.family is ArtifactFamily.SCORER and isinstance(data, RoutingOutcomes):
        scored = scorable(data.select_experts(model.manifest.experts), rows, "evaluated")
        if len(scored) < len(rows):
            where += f" ({len(rows) - len(scored)} rows without every expert's outcome skipped)"
        rows = scored
    subset = data.subset(rows)
    vectors = embed_data(data, embedder, cache, model.embed_chars)[rows]
    result: dict[str, Any] = {"rows": len(rows), "evaluated_on": where}
    if model.family is ArtifactFamily.CLASSIFIER:
        labelled = subset.labelled() if isinstance(subset, RoutingOutcomes) else subset
        y = labelled.label_indices(model.manifest.labels)
        probs = model.category_probs(Queries(labelled.texts, vectors))
        metrics = classification_metrics(
            np.log(np.maximum(probs, 1e-300)), y, model.manifest.labels, 1.0
        )
        # the probabilities are the artifact's calibrated ones: report its temperature, and no
        # "uncalibrated" ECE (it would be the same number)
        metrics.pop("ece_uncalibrated")
        assert model.classifier is not None
        metrics["temperature"] = model.classifier.temperature
        result.update(metrics)
        return result
    if not isinstance(subset, RoutingOutcomes):
        raise ValueError("a scorer artifact is evaluated on routing outcomes")
    if fusion is not None or experts is not None:
        logged = logged_from(model, subset, Queries(subset.texts, vectors))
        result["cost_unit"] = subset.cost_unit
        result.update(_fused(model, logged, fusion or "none", k, experts))
        return result
    result.update(outcome_metrics(model, subset.select_experts(model.manifest.experts), vectors))
    return result


def _fused(
    model: TrainedModel, logged: Logged, fusion: str, k: int, experts: Sequence[str] | None
) -> dict[str, Any]:
    """The fusion policy on the logged rows (restricted to `experts`), beside top-1 routing,
    the best single expert and the oracle of the same pool."""
    names = model.manifest.experts
    if experts is not None:
        unknown = [e for e in experts if e not in names]
        if unknown:
            raise ValueError(f"--experts: not experts of this artifact: {', '.join(unknown)}")
        logged = logged.restrict([names.index(e) for e in experts])
    policy = policy_of(model, fusion, k)
    outcome = apply_policy(logged, policy)
    top1 = apply_policy(logged, policy_of(model, "none"))
    return {
        "fusion": fusion,
        "policy": policy.describe(),
        **outcome.to_json(),
        "experts": list(experts or names),
        "top1_routing": top1.to_json(),
        "best_single": float(logged.scores.mean(axis=0).max()),
        "oracle": float(logged.scores.max(axis=1).mean()),
    }


def evaluate_baselines(data: RoutingOutcomes, split: SplitSpec | None = None) -> dict[str, Any]:
    """`coe eval --baselines`: best single, cheapest, random and oracle on the dev rows, and the
    CoE category map (fitted on the train rows, applied with the true category) as a curve."""
    rows = split_rows(data, split or SplitSpec())
    dev = scorable(data, rows.dev, "dev")
    dev_data = data.subset(dev)
    filled = dev_data.scores
    result: dict[str, Any] = {
        "rows": len(dev),
        "cost_unit": data.cost_unit,
        "baselines": [
            point_json(p) for p in baseline_points(filled, dev_data.costs, dev_data.experts)
        ],
    }
    if data.labels is not None:
        points = coe_baseline(data.subset(rows.train()), dev_data)
        result["coe_map_true_category"] = {
            "curve": [point_json(p) for p in points],
            **curve_metrics(points, filled, dev_data.costs, dev_data.experts),
        }
    return result
