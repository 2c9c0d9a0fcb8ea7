"""`TrainedModel`: a router artifact (`routers.artifact`) as an object that predicts.

Two families (`ArtifactFamily`), told apart by the manifest:

    classifier/<logistic|mlp|knn|centroid|hybrid>   queries -> category probabilities
    scorer/<heads|mf|knn-scorer|coe>                 queries -> predicted quality per expert
                                                     (`coe`: a category classifier plus the CoE
                                                     map's table, quality = sum_c p(c|x) q[c, e])

The artifact's arrays are prefixed by part: `clf_` (classifier), `scr_` (scorer), `coe_` (CoE
table), plus `expert_costs`; `manifest.params` records each part's kind and scalars and the
`selection` (operating point), and `fusion` when the artifact was trained with an adaptive
fan-out rule (`coe train --fusion adaptive`: `routers.fusion_rule.FusionRule`). `save_model`
and `load_model` are each other's inverse, numpy only: serving a trained router needs no
training code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from routers.artifact import ArtifactError, ArtifactFamily, Manifest, load_artifact, save_artifact
from routers.classifiers import CLASSIFIERS, Classifier, ClassifierKind, Queries
from routers.coe_map import CoeMap
from routers.fusion_rule import FusionRule
from routers.scorers import SCORERS, Scorer, ScorerKind
from routers.selection import choose

__all__ = ["Selection", "TrainedModel", "load_model", "save_model"]

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Selection:
    """How predicted expert qualities become a decision (scorer artifacts)."""

    cost_weight: float = 0.0
    top_k_mass: float = 0.0
    """Adaptive top-k: experts in order until their probability (classifiers: the category's;
    scorers: softmax(utility / top_k_temperature)) adds up to this mass. 0 selects one."""
    top_k_temperature: float = 0.05
    min_quality: float = 0.0
    """Abstain to the fallback when the best predicted quality is lower."""

    def to_json(self) -> dict[str, float]:
        return {
            "cost_weight": self.cost_weight,
            "top_k_mass": self.top_k_mass,
            "top_k_temperature": self.top_k_temperature,
            "min_quality": self.min_quality,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Selection:
        return cls(**{k: float(v) for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True, eq=False)
class TrainedModel:
    """A loaded artifact: `category_probs` for classifiers, `expert_quality` for scorers."""

    manifest: Manifest
    classifier: Classifier | None = None
    scorer: Scorer | None = None
    coe: CoeMap | None = None
    expert_costs: Floats | None = None
    selection: Selection = Selection()
    fusion: FusionRule | None = None
    """The trained fan-out rule: how many of the ranked experts to fuse (scorer artifacts)."""

    @property
    def family(self) -> ArtifactFamily:
        return self.manifest.family

    @property
    def embed_chars(self) -> int | None:
        """Only this many leading characters of a query are embedded (None: all)."""
        value = self.manifest.params.get("embed_chars")
        return int(value) if value else None

    def embed_text(self, text: str) -> str:
        return text[: self.embed_chars] if self.embed_chars else text

    def category_probs(self, queries: Queries) -> Floats:
        if self.classifier is None:
            raise TypeError(f"{self.manifest.tag}: no category classifier")
        return self.classifier.predict_proba(queries)

    def expert_quality(self, queries: Queries) -> Floats:
        if self.coe is not None:
            return self.coe.expected_quality(self.category_probs(queries))
        if self.scorer is None:
            raise TypeError(f"{self.manifest.tag}: not an expert scorer")
        return self.scorer.predict(queries.vectors)

    def choose(self, queries: Queries) -> npt.NDArray[np.int64]:
        """The expert index per query at the artifact's operating point."""
        if self.expert_costs is None:
            raise TypeError(f"{self.manifest.tag}: no expert costs")
        return choose(self.expert_quality(queries), self.expert_costs, self.selection.cost_weight)


def save_model(directory: Path, model: TrainedModel) -> Manifest:
    """Write `model` as an artifact; returns the manifest as written."""
    arrays: dict[str, npt.NDArray[Any]] = {}
    params: dict[str, Any] = dict(model.manifest.params)
    if model.classifier is not None:
        arrays.update({f"clf_{k}": v for k, v in model.classifier.to_arrays().items()})
        params["classifier"] = {"kind": model.classifier.kind.value, **model.classifier.params()}
    if model.scorer is not None:
        arrays.update({f"scr_{k}": v for k, v in model.scorer.to_arrays().items()})
        params["scorer"] = {"kind": model.scorer.kind.value, **model.scorer.params()}
    if model.coe is not None:
        arrays.update({f"coe_{k}": v for k, v in model.coe.to_arrays().items()})
        params["coe_categories"] = list(model.coe.categories)
    if model.expert_costs is not None:
        arrays["expert_costs"] = np.asarray(model.expert_costs, dtype=np.float64)
    params["selection"] = model.selection.to_json()
    if model.fusion is not None:
        params["fusion"] = model.fusion.to_json()
    return save_artifact(directory, replace(model.manifest, params=params), arrays)


def _part(arrays: Mapping[str, npt.NDArray[Any]], prefix: str) -> dict[str, npt.NDArray[Any]]:
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


def load_model(directory: Path) -> TrainedModel:
    """Load and validate an artifact; `ArtifactError` on anything that does not fit."""
    manifest, arrays = load_artifact(directory)
    if manifest.family not in (ArtifactFamily.CLASSIFIER, ArtifactFamily.SCORER):
        raise ArtifactError(
            f"{directory}: a {manifest.family.value} artifact ({manifest.tag}), not a router"
        )
    params = manifest.params
    try:
        classifier: Classifier | None = None
        scorer: Scorer | None = None
        coe: CoeMap | None = None
        if "classifier" in params:
            spec = params["classifier"]
            kind = CLASSIFIERS[ClassifierKind(spec["kind"])]
            classifier = kind.from_arrays(_part(arrays, "clf_"), spec)
        if "scorer" in params:
            spec = params["scorer"]
            scorer = SCORERS[ScorerKind(spec["kind"])].from_arrays(_part(arrays, "scr_"), spec)
        if "coe_categories" in params:
            coe = CoeMap.from_arrays(
                params["coe_categories"], manifest.experts, _part(arrays, "coe_")
            )
        costs = arrays.get("expert_costs")
        selection = Selection.from_json(params.get("selection", {}))
        fusion = FusionRule.from_json(params["fusion"]) if "fusion" in params else None
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{directory}: inconsistent artifact ({exc!r})") from exc
    model = TrainedModel(manifest, classifier, scorer, coe, costs, selection, fusion)
    if model.family is ArtifactFamily.CLASSIFIER and classifier is None:
        raise ArtifactError(f"{directory}: kind {manifest.tag!r} without a classifier")
    if model.family is ArtifactFamily.SCORER and (
        costs is None or len(costs) != len(manifest.experts)
    ):
        raise ArtifactError(f"{directory}: scorer without one cost per expert")
    return model
