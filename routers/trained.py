"""`TrainedRouter`: a trained artifact (`routers.trained_model`) served as a `Router`.

    classifier artifacts   query -> category probabilities; the registry's experts declare the
                           categories they serve (`routers.expert_map.ExpertMap`)
    scorer artifacts       query -> predicted quality per expert; the router sends the query to
                           argmax(quality - cost_weight * cost) among the experts the registry
                           has enabled, abstaining to the fallback below `min_quality`

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
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from routers.artifact import ArtifactError, ArtifactFamily
from routers.base import ExpertTable, RouteDecision, ScoredExpert
from routers.classifiers import Queries
from routers.embedder import Embedder
from routers.expert_map import ExpertMap, sort_categories
from routers.probability import softmax
from routers.selection import adaptive_top_k
from routers.trained_model import TrainedModel, load_model

__all__ = ["TrainedRouter"]

logger = logging.getLogger(__name__)
Floats = npt.NDArray[np.float64]


def _top_k(probs: Floats, mass: float) -> int:
    return int(adaptive_top_k(probs, mass)[0]) if mass > 0 else 1


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
        return f"trained:{self._model.manifest.tag}"

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    @property
    def model(self) -> TrainedModel:
        self._maybe_reload()
        return self._model

    def categories(self, table: ExpertTable) -> Sequence[str]:
        model = self.model
        return model.manifest.labels if model.family is ArtifactFamily.CLASSIFIER else ()

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
            logger.info("reloaded router artifact %s (%s)", self._artifact, model.manifest.tag)

    def route(self, query: str, table: ExpertTable) -> RouteDecision:
        start = time.perf_counter()
        model = self.model
        queries = Queries([query], self._embedder.embed([model.embed_text(query)]))
        if model.family is ArtifactFamily.CLASSIFIER:
            probs = model.category_probs(queries)[0]
            categories = sort_categories(
                dict(zip(model.manifest.labels, probs.tolist(), strict=True))
            )
            decision = self._expert_map.decide(categories, table)
            selected = _top_k(probs, model.selection.top_k_mass)
        else:
            decision, selected = self._route_scored(model, queries, table)
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
            fusion=decision.fusion,
        )

    def _route_scored(
        self,
        model: TrainedModel,
        queries: Queries,
        table: ExpertTable,
    ) -> tuple[RouteDecision, int]:
        assert model.expert_costs is not None
        enabled = {e.name for e in table.experts if e.enabled}
        known = [i for i, name in enumerate(model.manifest.experts) if name in enabled]
        categories: tuple[tuple[str, float], ...] = ()
        if model.coe is not None:
            probs = model.category_probs(queries)[0]
            categories = sort_categories(
                dict(zip(model.coe.categories, probs.tolist(), strict=True))
            )
        quality = model.expert_quality(queries)[0]
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
        if model.fusion is None:
            return RouteDecision(ranked, categories, False, reason), selected
        rule = model.fusion
        reason += f"; fan-out rule: {rule.strategy.value} over up to {rule.max_k}"
        decision = RouteDecision(ranked, categories, False, reason, fusion=rule.strategy.value)
        return decision, min(selected, rule.max_k)
