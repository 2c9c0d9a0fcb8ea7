"""Trained routers: an artifact (`routers.artifact`) loaded as a model and served as a `Router`.

Two families of artifact, told apart by `manifest.kind`:

    classifier/<logistic|mlp|knn|centroid|hybrid>   query -> category probabilities; the
        registry's experts declare the categories they serve (`routers.expert_map.ExpertMap`)
    scorer/<heads|mf|knn|coe>                        query -> predicted quality per expert;
        the router sends the query to argmax(quality - cost_weight * cost) among the experts
        the registry has enabled (`coe`: a category classifier plus the CoE map's table,
        quality = sum_c p(c | x) q[c, e])

`TrainedRouter` re-reads the artifact when its manifest changes (checked at most every
`reload_interval_s`), so `coe train --out A` under a running gateway takes effect without a
restart; an artifact that fails to load is logged and the previous model kept.

Lifecycle::

    router = TrainedRouter(embedder, Path("artifacts/mmlu-pro"))   # loads and validates now
    decision = router.route("What is 2+2?", table)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from routers.artifact import ArtifactError, Manifest, load_artifact, save_artifact
from routers.base import ExpertTable, RouteDecision, ScoredExpert
from routers.calibration import softmax
from routers.classifiers import CLASSIFIERS, HybridClassifier
from routers.coe_map import CoeMap
from routers.embedder import Embedder
from routers.expert_map import ExpertMap, sort_categories
from routers.scorers import SCORERS
from routers.selection import adaptive_top_k, choose

__all__ = ["Selection", "TrainedModel", "TrainedRouter", "load_model", "save_model"]

logger = logging.getLogger(__name__)
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
    classifier: Any = None
    scorer: Any = None
    coe: CoeMap | None = None
    expert_costs: Floats | None = None
    selection: Selection = Selection()

    @property
    def family(self) -> str:
        return self.manifest.kind.split("/", 1)[0]

    @property
    def embed_chars(self) -> int | None:
        """Only this many leading characters of a query are embedded (None: all)."""
        value = self.manifest.params.get("embed_chars")
        return int(value) if value else None

    def embed_text(self, text: str) -> str:
        return text[: self.embed_chars] if self.embed_chars else text

    def category_probs(self, texts: Sequence[str], vectors: npt.NDArray[np.floating]) -> Floats:
        if self.classifier is None:
            raise TypeError(f"{self.manifest.kind}: no category classifier")
        if isinstance(self.classifier, HybridClassifier):
            return self.classifier.predict_proba_from(vectors, list(texts))
        return np.asarray(self.classifier.predict_proba(vectors), dtype=np.float64)

    def expert_quality(self, texts: Sequence[str], vectors: npt.NDArray[np.floating]) -> Floats:
        if self.coe is not None:
            return self.coe.expected_quality(self.category_probs(texts, vectors))
        if self.scorer is None:
            raise TypeError(f"{self.manifest.kind}: not an expert scorer")
        return np.asarray(self.scorer.predict(vectors), dtype=np.float64)

    def choose(
        self, texts: Sequence[str], vectors: npt.NDArray[np.floating]
    ) -> npt.NDArray[np.int64]:
        """The expert index per query at the artifact's operating point."""
        assert self.expert_costs is not None
        return choose(
            self.expert_quality(texts, vectors), self.expert_costs, self.selection.cost_weight
        )


def _top_k(probs: Floats, mass: float) -> int:
    return int(adaptive_top_k(probs, mass)[0]) if mass > 0 else 1


def save_model(directory: Path, model: TrainedModel) -> Manifest:
    arrays: dict[str, npt.NDArray[Any]] = {}
    params: dict[str, Any] = dict(model.manifest.params)
    if model.classifier is not None:
        arrays.update({f"clf_{k}": v for k, v in model.classifier.to_arrays().items()})
        params["classifier"] = {"kind": model.classifier.kind, **model.classifier.params()}
    if model.scorer is not None:
        arrays.update({f"scr_{k}": v for k, v in model.scorer.to_arrays().items()})
        params["scorer"] = {"kind": model.scorer.kind, **model.scorer.params()}
    if model.coe is not None:
        arrays.update({f"coe_{k}": v for k, v in model.coe.to_arrays().items()})
        params["coe_categories"] = list(model.coe.categories)
    if model.expert_costs is not None:
        arrays["expert_costs"] = np.asarray(model.expert_costs, dtype=np.float64)
    params["selection"] = model.selection.to_json()
    manifest = replace(model.manifest, params=params)
    return save_artifact(directory, manifest, arrays)


def _part(arrays: Mapping[str, npt.NDArray[Any]], prefix: str) -> dict[str, npt.NDArray[Any]]:
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


def load_model(directory: Path) -> TrainedModel:
    """Load and validate an artifact; `ArtifactError` on anything that does not fit."""
    manifest, arrays = load_artifact(directory)
    params = manifest.params
    try:
        classifier = scorer = coe = None
        if "classifier" in params:
            spec = params["classifier"]
            classifier = CLASSIFIERS[spec["kind"]].from_arrays(_part(arrays, "clf_"), spec)
        if "scorer" in params:
            spec = params["scorer"]
            scorer = SCORERS[spec["kind"]].from_arrays(_part(arrays, "scr_"), spec)
        if "coe_categories" in params:
            coe = CoeMap.from_arrays(
                params["coe_categories"], manifest.experts, _part(arrays, "coe_")
            )
        costs = arrays.get("expert_costs")
        selection = Selection.from_json(params.get("selection", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{directory}: inconsistent artifact ({exc!r})") from exc
    model = TrainedModel(manifest, classifier, scorer, coe, costs, selection)
    if model.family == "classifier" and classifier is None:
        raise ArtifactError(f"{directory}: kind {manifest.kind!r} without a classifier")
    if model.family == "scorer" and (costs is None or len(costs) != len(manifest.experts)):
        raise ArtifactError(f"{directory}: scorer without one cost per expert")
    return model


class TrainedRouter:
    """A `Router` over a trained artifact, reloaded when the artifact changes."""

    def __init__(
        self,
        embedder: Embedder,
        artifact: Path,
        *,
        expert_map: ExpertMap | None = None,
        reload_interval_s: float = 2.0,
    ) -> None:
        self._embedder = embedder
        self._artifact = artifact
        self._expert_map = expert_map or ExpertMap()
        self._interval = reload_interval_s
        self._lock = threading.Lock()
        self._model = load_model(artifact)
        self._check_embedder(self._model)
        self._stamp = self._manifest_stamp()
        self._checked = time.monotonic()

    @property
    def name(self) -> str:
        return f"trained:{self._model.manifest.kind}"

    @property
    def model(self) -> TrainedModel:
        self._maybe_reload()
        return self._model

    def categories(self, table: ExpertTable) -> Sequence[str]:
        model = self.model
        return model.manifest.labels if model.family == "classifier" else ()

    def _check_embedder(self, model: TrainedModel) -> None:
        if model.manifest.embedder_id != self._embedder.id:
            raise ArtifactError(
                f"{self._artifact}: trained on embedder {model.manifest.embedder_id!r}, "
                f"the gateway embeds with {self._embedder.id!r}"
            )

    def _manifest_stamp(self) -> tuple[int, int]:
        try:
            stat = (self._artifact / "manifest.json").stat()
        except OSError:
            return (0, 0)
        return (stat.st_mtime_ns, stat.st_size)

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < self._interval:
            return
        with self._lock:
            self._checked = now
            stamp = self._manifest_stamp()
            if stamp == self._stamp:
                return
            try:
                model = load_model(self._artifact)
                self._check_embedder(model)
            except ArtifactError as exc:
                logger.warning("keeping the current router: %s", exc)
                return
            self._model, self._stamp = model, stamp
            logger.info("reloaded router artifact %s (%s)", self._artifact, model.manifest.kind)

    def route(self, query: str, table: ExpertTable) -> RouteDecision:
        start = time.perf_counter()
        model = self.model
        vectors = self._embedder.embed([model.embed_text(query)])
        if model.family == "classifier":
            probs = model.category_probs([query], vectors)[0]
            categories = sort_categories(
                dict(zip(model.manifest.labels, probs.tolist(), strict=True))
            )
            decision = self._expert_map.decide(categories, table)
            selected = _top_k(probs, model.selection.top_k_mass)
        else:
            decision, selected = self._route_scored(model, [query], vectors, table)
        return RouteDecision(
            experts=decision.experts,
            categories=decision.categories,
            fallback=decision.fallback,
            reason=decision.reason,
            selected=max(1, min(selected, len(decision.experts))),
            latency_ms=(time.perf_counter() - start) * 1000.0,
            router=self.name,
            top_similarity=decision.top_similarity,
            extra=decision.extra,
        )

    def _route_scored(
        self,
        model: TrainedModel,
        texts: list[str],
        vectors: npt.NDArray[np.floating],
        table: ExpertTable,
    ) -> tuple[RouteDecision, int]:
        assert model.expert_costs is not None
        enabled = {e.name for e in table.experts if e.enabled}
        known = [i for i, name in enumerate(model.manifest.experts) if name in enabled]
        categories: tuple[tuple[str, float], ...] = ()
        if model.coe is not None:
            probs = model.category_probs(texts, vectors)[0]
            categories = sort_categories(
                dict(zip(model.coe.categories, probs.tolist(), strict=True))
            )
        quality = model.expert_quality(texts, vectors)[0]
        if not known:
            return RouteDecision(
                experts=(), categories=categories, reason="no trained expert is enabled"
            ), 1
        costs = model.expert_costs[known]
        utility = quality[known] - model.selection.cost_weight * costs
        order = sorted(range(len(known)), key=lambda j: (-utility[j], costs[j]))
        ranked = tuple(
            ScoredExpert(model.manifest.experts[known[j]], float(quality[known[j]])) for j in order
        )
        weights = softmax(utility[order] / model.selection.top_k_temperature)
        selected = _top_k(weights, model.selection.top_k_mass)
        best = ranked[0]
        fallback_name = self._expert_map.fallback
        if (
            fallback_name is not None
            and fallback_name in enabled
            and best.score < model.selection.min_quality
        ):
            rest = tuple(e for e in ranked if e.name != fallback_name)
            fallback_expert = ScoredExpert(fallback_name, 0.0)
            reason = f"low predicted quality {best.score:.3f} < {model.selection.min_quality}"
            return RouteDecision((fallback_expert, *rest), categories, True, reason), 1
        reason = f"argmax quality - {model.selection.cost_weight:g} x cost"
        return RouteDecision(ranked, categories, False, reason), selected
