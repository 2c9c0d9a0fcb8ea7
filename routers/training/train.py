"""`train`: what `coe train` runs. Fit a router on data, pick its operating point, save it.

Splits (`routers.training.splits`): the model is fitted on the fit rows, its temperature and
operating point are chosen on the val rows, and every reported metric is measured on the dev
rows. Classifiers are refitted on all train rows after calibration (the temperature is kept);
scorers keep the fit-row model so the operating point matches the model it was chosen for.

Calibration: a temperature fitted on the val rows (minimum NLL) is kept only where it lowers
their expected calibration error; the manifest's `calibration` says which was chosen.

A missing outcome (no recorded score of an expert on a query) is unknown, not a failure: the
scorers leave it out of their loss, the CoE table averages the observed outcomes, and curves,
operating points and dev metrics are measured on the rows with every expert's outcome.
`missing_as_failure` counts it as a score of 0 instead (sparse logs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from routers.artifact import ArtifactFamily, Manifest
from routers.classifiers import Classifier, Queries
from routers.embedder import Embedder
from routers.selection import choose
from routers.trained_model import Selection, TrainedModel, save_model
from routers.training.calibration import calibrate_temperature
from routers.training.datasets import LabelledQueries, RoutingOutcomes
from routers.training.embed_cache import EmbeddingCache
from routers.training.fit_classifiers import ClassifierHyper, HybridHyper
from routers.training.fit_coe import fit_coe_map
from routers.training.fusion_eval import apply_policy, as_rule, logged_from, search_adaptive
from routers.training.kinds import Hyper, TrainKind, is_classifier_hyper, is_scorer_hyper
from routers.training.operating import constrained_point, cost_weight_grid
from routers.training.report import classification_metrics, outcome_metrics
from routers.training.splits import Rows, SplitSpec, scorable, split_rows

__all__ = ["Data", "TrainOptions", "TrainResult", "embed_data", "train"]

F32 = npt.NDArray[np.float32]
Floats = npt.NDArray[np.float64]
Data = LabelledQueries | RoutingOutcomes
Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainOptions:
    split: SplitSpec = field(default_factory=SplitSpec)
    calibrate: bool = True
    max_cost: float | None = None
    min_quality: float | None = None
    cost_weight: float | None = None
    top_k_mass: float = 0.0
    """Adaptive top-k mass stored in the artifact (0: one expert per query)."""
    fusion_adaptive: bool = False
    """Choose an adaptive fan-out rule (how many ranked experts to fuse per query, by the
    router's confidence) on the val rows within `max_cost`, and record it in the artifact
    (`routers.training.fusion_eval.search_adaptive`). Needs each expert's logged answers."""
    missing_as_failure: bool = False
    """Count a missing outcome as a failure (score 0) when fitting and scoring, instead of
    leaving it out: for sparse outcome logs in which few queries have every expert's outcome."""
    embed_chars: int | None = None
    """Embed only the first N characters of each query (training and routing alike): bounds
    the embedding latency of long queries; TF-IDF features still see the whole text."""
    hyper: Hyper | None = None
    """The kind's hyper-parameters (`routers.training.kinds.hyper_for`); None: its defaults."""


@dataclass(frozen=True)
class TrainResult:
    artifact: Path
    manifest: Manifest
    metrics: dict[str, Any]


def embed_data(
    data: Data, embedder: Embedder, cache: EmbeddingCache | None, chars: int | None
) -> F32:
    """The embeddings of `data`'s texts (their first `chars` characters), through the cache."""
    cache = cache or EmbeddingCache()
    return cache.embed(embedder, [t[:chars] if chars else t for t in data.texts])


def _hyper(kind: TrainKind, options: TrainOptions) -> Hyper:
    hyper = options.hyper if options.hyper is not None else kind.hyper_class()
    if not isinstance(hyper, kind.hyper_class):
        raise ValueError(
            f"router kind {kind.value!r} takes {kind.hyper_class.__name__}, "
            f"not {type(hyper).__name__}"
        )
    return hyper


def _train_classifier(
    hyper: ClassifierHyper,
    data: LabelledQueries,
    queries: Queries,
    rows: Rows,
    options: TrainOptions,
    progress: Progress,
    *,
    refit: bool = True,
) -> tuple[Classifier, dict[str, Any]]:
    """Fit on `fit`, calibrate on `val`, (refit on both), report on `dev`."""
    labels = data.label_set()
    y = data.label_indices(labels)
    progress(f"fitting {hyper.kind.value} on {len(rows.fit)} queries")
    model = hyper.fit(queries.rows(rows.fit), y[rows.fit], len(labels))
    temperature, calibration = 1.0, dict[str, Any]()
    if options.calibrate:
        temperature, calibration = calibrate_temperature(
            model.logits(queries.rows(rows.val)), y[rows.val]
        )
        progress(f"calibration: {calibration['chosen']}")
    if refit:
        train_rows = rows.train()
        progress(f"refitting on {len(train_rows)} queries (temperature {temperature:.3f})")
        model = hyper.fit(queries.rows(train_rows), y[train_rows], len(labels))
    model = model.with_temperature(temperature)
    metrics = classification_metrics(
        model.logits(queries.rows(rows.dev)), y[rows.dev], labels, temperature
    )
    metrics["rows"] = {"fit": len(rows.fit), "val": len(rows.val), "dev": len(rows.dev)}
    if calibration:
        metrics["calibration"] = calibration
    return model, metrics


def _operating(
    quality: Floats, costs: Floats, scores: Floats, realised: Floats, options: TrainOptions
) -> tuple[float, dict[str, Any]]:
    """The cost weight meeting the options' constraint on the val rows, and what it gives
    there: mean quality and cost with their standard errors (what to expect on new data)."""
    weight = 0.0
    if options.cost_weight is not None:
        weight = options.cost_weight
    elif options.max_cost is not None or options.min_quality is not None:
        point = constrained_point(
            quality,
            costs,
            scores,
            max_cost=options.max_cost,
            min_quality=options.min_quality,
            realised_costs=realised,
        )
        assert point.param is not None
        weight = point.param
    rows = np.arange(len(quality))
    chosen = choose(quality, costs, weight)
    got = np.nan_to_num(scores[rows, chosen], nan=0.0)
    paid = realised[rows, chosen]
    root_n = np.sqrt(max(len(rows), 1))
    estimate = {
        "rows": len(rows),
        "quality": float(got.mean()),
        "quality_se": float(got.std() / root_n),
        "cost": float(paid.mean()),
        "cost_se": float(paid.std() / root_n),
    }
    return weight, estimate


def _fit_expert_quality(
    kind: TrainKind,
    hyper: Hyper,
    data: RoutingOutcomes,
    queries: Queries,
    rows: Rows,
    options: TrainOptions,
    progress: Progress,
) -> TrainedModel:
    """The model predicting each expert's quality, fitted on the fit rows."""
    manifest = Manifest(ArtifactFamily.SCORER, kind.value, embedder_id="", experts=data.experts)
    if kind is TrainKind.COE:
        assert isinstance(hyper, HybridHyper)
        labelled = data.labelled()
        classifier, _ = _train_classifier(
            hyper, labelled, queries, rows, options, progress, refit=False
        )
        coe = fit_coe_map(
            [labelled.labels[i] for i in rows.fit],
            data.scores[rows.fit],
            data.costs[rows.fit],
            data.experts,
            categories=labelled.label_set(),
        )
        return TrainedModel(manifest, classifier=classifier, coe=coe)
    assert is_scorer_hyper(hyper)
    scorer = hyper.fit(np.asarray(queries.vectors[rows.fit], np.float32), data.scores[rows.fit])
    return TrainedModel(manifest, scorer=scorer)


def _fusion_rule(
    model: TrainedModel,
    data: RoutingOutcomes,
    queries: Queries,
    val: npt.NDArray[np.int64],
    dev: npt.NDArray[np.int64],
    options: TrainOptions,
) -> tuple[TrainedModel, dict[str, Any]]:
    """The adaptive fan-out rule chosen on the val rows within `max_cost`, and what it gives
    on the val and dev rows."""
    if options.max_cost is None:
        raise ValueError("--fusion adaptive chooses its rule within a budget: give --max-cost X")
    val_logged = logged_from(model, data.subset(val), queries.rows(val))
    assert model.expert_costs is not None
    policy, on_val = search_adaptive(
        val_logged,
        max_cost=options.max_cost,
        cost_weights=cost_weight_grid(model.expert_costs, 40).tolist(),
    )
    selection, rule = as_rule(policy)
    model = replace(model, selection=selection, fusion=rule)
    on_dev = apply_policy(logged_from(model, data.subset(dev), queries.rows(dev)), policy)
    return model, {
        "rule": policy.describe(),
        "max_cost": options.max_cost,
        "val": on_val.to_json(),
        "dev": on_dev.to_json(),
    }


def _train_scorer(
    kind: TrainKind,
    hyper: Hyper,
    data: RoutingOutcomes,
    vectors: F32,
    options: TrainOptions,
    progress: Progress,
) -> tuple[TrainedModel, dict[str, Any]]:
    rows = split_rows(data, options.split)
    if options.missing_as_failure:
        data = replace(data, scores=data.filled_scores())
    queries = Queries(data.texts, vectors)
    progress(f"fitting {kind.value} on {len(rows.fit)} queries x {len(data.experts)} experts")
    model = _fit_expert_quality(kind, hyper, data, queries, rows, options, progress)
    # the router decides on each expert's mean cost over the training rows (a query's own cost
    # is not known before the call); the curves report what the calls really cost
    costs = data.subset(np.concatenate([rows.fit, rows.val])).mean_costs()
    model = replace(model, expert_costs=costs)
    # a routing decision can only be scored where every expert's outcome is known
    val_scored, dev_scored = scorable(data, rows.val, "val"), scorable(data, rows.dev, "dev")
    weight, estimate = _operating(
        model.expert_quality(queries.rows(val_scored)),
        costs,
        data.scores[val_scored],
        data.costs[val_scored],
        options,
    )
    model = replace(model, selection=Selection(cost_weight=weight, top_k_mass=options.top_k_mass))
    fusion: dict[str, Any] = {}
    if options.fusion_adaptive:
        model, fusion = _fusion_rule(model, data, queries, val_scored, dev_scored, options)
        progress(f"fan-out rule: {fusion['rule']}")
    progress(f"cost weight {model.selection.cost_weight:g}; evaluating on {len(dev_scored)} dev")
    metrics = outcome_metrics(
        model, data.subset(dev_scored), vectors[dev_scored], train=data.subset(rows.fit)
    )
    metrics["val_operating_point"] = estimate
    if fusion:
        metrics["fusion"] = fusion
    metrics["rows"] = {
        "fit": len(rows.fit),
        "val": len(rows.val),
        "dev": len(rows.dev),
        "dev_scored": len(dev_scored),
        "val_scored": len(val_scored),
    }
    return model, metrics


def train(
    data: Data,
    kind: TrainKind | str,
    out: Path,
    embedder: Embedder,
    *,
    options: TrainOptions | None = None,
    cache: EmbeddingCache | None = None,
    progress: Progress = lambda message: None,
) -> TrainResult:
    """Fit a router of `kind` on `data`, write its artifact to `out`, return its dev metrics."""
    kind = TrainKind(kind)
    options = options or TrainOptions()
    hyper = _hyper(kind, options)
    if kind.needs_outcomes and not isinstance(data, RoutingOutcomes):
        raise ValueError(f"router kind {kind.value!r} needs routing outcomes (per-expert scores)")
    if options.fusion_adaptive and not kind.needs_outcomes:
        raise ValueError(
            "--fusion adaptive needs an expert scorer (heads, mf, knn-scorer, coe): a fan-out "
            f"rule ranks experts, and {kind.value!r} classifies categories"
        )
    vectors = embed_data(data, embedder, cache, options.embed_chars)
    if isinstance(data, RoutingOutcomes) and kind.needs_outcomes:
        model, metrics = _train_scorer(kind, hyper, data, vectors, options, progress)
        labels = model.coe.categories if model.coe is not None else ()
    else:
        assert is_classifier_hyper(hyper)
        labelled = data.labelled() if isinstance(data, RoutingOutcomes) else data
        rows = split_rows(data, options.split)
        queries = Queries(labelled.texts, vectors)
        classifier, metrics = _train_classifier(hyper, labelled, queries, rows, options, progress)
        labels = labelled.label_set()
        model = TrainedModel(
            Manifest(ArtifactFamily.CLASSIFIER, kind.value, embedder_id=""),
            classifier=classifier,
            selection=Selection(top_k_mass=options.top_k_mass),
        )
    manifest = replace(
        model.manifest,
        embedder_id=embedder.id,
        data_hash=data.data_hash(),
        labels=tuple(labels),
        params={
            "split": options.split.to_json(),
            "hyper": dataclasses.asdict(hyper),  # type: ignore[call-overload]
            "data": data.name,
            "embed_chars": options.embed_chars,
            "missing_as_failure": options.missing_as_failure,
        },
        metrics=metrics,
    )
    written = save_model(out, replace(model, manifest=manifest))
    return TrainResult(out, written, metrics)
