"""`train` and `evaluate`: what `coe train` / `coe eval` run.

Splits (never fit on the rows you report)::

    data ──► train rows ──► fit rows     the model is fitted here
        │               └─► val rows     temperature and operating point (cost weight) chosen here
        └──► dev rows                    every reported metric (stored in the manifest)

The dev split is a seeded, label-stratified 20 % (or the split that ships with the data, e.g.
RouterDC's `test`, with `predefined_split=True`). Classifiers are refitted on all train rows
after calibration (the temperature is kept); scorers keep the fit-row model so the operating
point matches the model it was chosen for. `evaluate` on the same data (same hash) re-derives
the split from the manifest and scores the dev rows only; on other data it scores every row.

Calibration: a temperature fitted on the val rows (minimum NLL) is kept only where it lowers
their expected calibration error; the manifest's `calibration` says which was chosen.

A missing outcome (no recorded score of an expert on a query) is unknown, not a failure: the
scorers leave it out of their loss, the CoE table averages the observed outcomes, and curves,
operating points and dev metrics are measured on the rows with every expert's outcome.
`missing_as_failure` counts it as a score of 0 instead (sparse logs).

Router kinds (`TrainKind`): classifiers `logistic`, `mlp`, `knn`, `centroid`, `hybrid`
(embedding + TF-IDF) need labelled queries; `coe` (hybrid classifier + CoE map), `heads`, `mf`,
`knn-scorer` need routing outcomes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from routers.artifact import Manifest
from routers.calibration import calibrate_temperature
from routers.classifiers import (
    CentroidClassifier,
    HybridClassifier,
    KnnClassifier,
    LogisticClassifier,
    MlpClassifier,
)
from routers.coe_map import fit_coe_map
from routers.datasets import LabelledQueries, RoutingOutcomes, train_dev_split
from routers.embed_cache import EmbeddingCache
from routers.embedder import Embedder
from routers.evaluation import baseline_points
from routers.metrics_report import (
    classification_metrics,
    coe_baseline,
    curve_metrics,
    outcome_metrics,
    point_json,
)
from routers.scorers import HeadsScorer, KnnScorer, MfScorer
from routers.selection import choose, constrained_point
from routers.trained import Selection, TrainedModel, load_model, save_model

__all__ = ["TrainKind", "TrainOptions", "TrainResult", "evaluate", "evaluate_baselines", "train"]

F32 = npt.NDArray[np.float32]
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


class TrainKind(enum.StrEnum):
    LOGISTIC = "logistic"
    MLP = "mlp"
    KNN = "knn"
    CENTROID = "centroid"
    HYBRID = "hybrid"
    COE = "coe"
    HEADS = "heads"
    MF = "mf"
    KNN_SCORER = "knn-scorer"

    @property
    def needs_outcomes(self) -> bool:
        return self in (TrainKind.COE, TrainKind.HEADS, TrainKind.MF, TrainKind.KNN_SCORER)


@dataclass(frozen=True)
class TrainOptions:
    dev_fraction: float = 0.2
    val_fraction: float = 0.2
    seed: int = 0
    predefined_split: bool = False
    """Use the data's own split column (`test` = dev) instead of a seeded one."""
    calibrate: bool = True
    max_cost: float | None = None
    min_quality: float | None = None
    cost_weight: float | None = None
    top_k_mass: float = 0.0
    """Adaptive top-k mass stored in the artifact (0: one expert per query)."""
    missing_as_failure: bool = False
    """Count a missing outcome as a failure (score 0) when fitting and scoring, instead of
    leaving it out: for sparse outcome logs in which few queries have every expert's outcome."""
    embed_chars: int | None = None
    """Embed only the first N characters of each query (training and routing alike): bounds
    the embedding latency of long queries; TF-IDF features still see the whole text."""
    hyper: dict[str, float] = field(default_factory=dict)
    """Model hyper-parameters: c, k, tau, rank, l2, hidden, alpha, word_features, ..."""


@dataclass(frozen=True)
class TrainResult:
    artifact: Path
    manifest: Manifest
    metrics: dict[str, Any]


Data = LabelledQueries | RoutingOutcomes


def _split(
    n: int, labels: tuple[str, ...] | None, split: tuple[str, ...] | None, options: TrainOptions
) -> tuple[Ints, Ints, Ints]:
    """(fit, val, dev) row indices."""
    if options.predefined_split:
        if split is None:
            raise ValueError("the data has no split column to use (predefined_split)")
        dev = np.array([i for i, s in enumerate(split) if s == "test"], dtype=np.int64)
        train_rows = np.array([i for i, s in enumerate(split) if s == "train"], dtype=np.int64)
    else:
        train_rows, dev = train_dev_split(n, options.dev_fraction, options.seed, labels)
    strata = None if labels is None else [labels[i] for i in train_rows]
    fit_i, val_i = train_dev_split(len(train_rows), options.val_fraction, options.seed + 1, strata)
    return train_rows[fit_i], train_rows[val_i], dev


def _rows(data: Data, options: TrainOptions) -> tuple[Ints, Ints, Ints]:
    split = data.split if isinstance(data, RoutingOutcomes) else None
    return _split(len(data), data.labels, split, options)


def _fit_classifier(
    kind: TrainKind, texts: list[str], x: F32, y: Ints, n: int, hyper: dict[str, float]
) -> Any:
    if kind is TrainKind.LOGISTIC:
        return LogisticClassifier.fit(x, y, n, c=hyper.get("c", 4.0))
    if kind is TrainKind.MLP:
        hidden = (int(hyper.get("hidden", 256)),)
        return MlpClassifier.fit(x, y, n, hidden=hidden, alpha=hyper.get("alpha", 1e-3))
    if kind is TrainKind.KNN:
        return KnnClassifier.fit(x, y, n, k=int(hyper.get("k", 15)), tau=hyper.get("tau", 0.05))
    if kind is TrainKind.CENTROID:
        return CentroidClassifier.fit(x, y, n, scale=hyper.get("scale", 0.05))
    return HybridClassifier.fit(
        texts,
        x,
        y,
        n,
        c=hyper.get("c", 8.0),
        word_features=int(hyper.get("word_features", 20_000)),
        char_features=int(hyper.get("char_features", 50_000)),
    )


def _logits(model: Any, texts: list[str], x: F32) -> npt.NDArray[np.float64]:
    if isinstance(model, HybridClassifier):
        return model.logits_from(x, texts)
    return np.asarray(model.logits(x), dtype=np.float64)


def _train_classifier(
    kind: TrainKind,
    data: LabelledQueries,
    vectors: F32,
    rows: tuple[Ints, Ints, Ints],
    options: TrainOptions,
    progress: Callable[[str], None],
    *,
    refit: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """Fit on `fit`, calibrate on `val`, (refit on both), report on `dev`."""
    fit, val, dev = rows
    labels = data.label_set()
    y = data.label_indices(labels)
    texts = list(data.texts)

    def pick(idx: Ints) -> list[str]:
        return [texts[i] for i in idx]

    progress(f"fitting {kind.value} on {len(fit)} queries")
    model = _fit_classifier(kind, pick(fit), vectors[fit], y[fit], len(labels), options.hyper)
    temperature, calibration = 1.0, dict[str, Any]()
    if options.calibrate:
        temperature, calibration = calibrate_temperature(
            _logits(model, pick(val), vectors[val]), y[val]
        )
        progress(f"calibration: {calibration['chosen']}")
    if refit:
        train_rows = np.sort(np.concatenate([fit, val]))
        progress(f"refitting on {len(train_rows)} queries (temperature {temperature:.3f})")
        model = _fit_classifier(
            kind, pick(train_rows), vectors[train_rows], y[train_rows], len(labels), options.hyper
        )
    model = replace(model, temperature=temperature)
    metrics = classification_metrics(
        _logits(model, pick(dev), vectors[dev]), y[dev], labels, temperature
    )
    metrics["rows"] = {"fit": len(fit), "val": len(val), "dev": len(dev)}
    if calibration:
        metrics["calibration"] = calibration
    return model, metrics


def _fit_scorer(
    kind: TrainKind, data: RoutingOutcomes, vectors: F32, rows: Ints, hyper: dict[str, float]
) -> Any:
    x, s = vectors[rows], data.scores[rows]
    if kind is TrainKind.HEADS:
        return HeadsScorer.fit(x, s, l2=hyper.get("l2", 1e-3))
    if kind is TrainKind.MF:
        return MfScorer.fit(x, s, rank=int(hyper.get("rank", 16)), l2=hyper.get("l2", 1e-3))
    return KnnScorer.fit(x, s, k=int(hyper.get("k", 50)), tau=hyper.get("tau", 0.05))


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


def _train_scorer(
    kind: TrainKind,
    data: RoutingOutcomes,
    vectors: F32,
    options: TrainOptions,
    progress: Callable[[str], None],
) -> tuple[TrainedModel, dict[str, Any]]:
    fit, val, dev = _rows(data, options)
    if options.missing_as_failure:
        data = replace(data, scores=data.filled_scores())
    texts = list(data.texts)
    manifest = Manifest(kind=f"scorer/{kind.value}", embedder_id="", experts=data.experts)
    progress(f"fitting {kind.value} on {len(fit)} queries x {len(data.experts)} experts")
    if kind is TrainKind.COE:
        labelled = data.labelled()
        classifier, _ = _train_classifier(
            TrainKind.HYBRID, labelled, vectors, (fit, val, dev), options, progress, refit=False
        )
        coe = fit_coe_map(
            [labelled.labels[i] for i in fit],
            data.scores[fit],
            data.costs[fit],
            data.experts,
            categories=labelled.label_set(),
        )
        model = TrainedModel(manifest, classifier=classifier, coe=coe)
    else:
        model = TrainedModel(manifest, scorer=_fit_scorer(kind, data, vectors, fit, options.hyper))
    # the router decides on each expert's mean cost over the training rows (a query's own cost
    # is not known before the call); the curves report what the calls really cost
    costs = data.subset(np.concatenate([fit, val])).mean_costs()
    model = replace(model, expert_costs=costs)
    # a routing decision can only be scored where every expert's outcome is known
    val_scored, dev_scored = _scorable(data, val, "val"), _scorable(data, dev, "dev")
    val_texts = [texts[i] for i in val_scored]
    weight, estimate = _operating(
        model.expert_quality(val_texts, vectors[val_scored]),
        costs,
        data.scores[val_scored],
        data.costs[val_scored],
        options,
    )
    model = replace(model, selection=Selection(cost_weight=weight, top_k_mass=options.top_k_mass))
    progress(f"cost weight {weight:g}; evaluating on {len(dev_scored)} dev queries")
    metrics = outcome_metrics(
        model, data.subset(dev_scored), vectors[dev_scored], train=data.subset(fit)
    )
    metrics["val_operating_point"] = estimate
    metrics["rows"] = {
        "fit": len(fit),
        "val": len(val),
        "dev": len(dev),
        "dev_scored": len(dev_scored),
        "val_scored": len(val_scored),
    }
    return model, metrics


def _scorable(data: RoutingOutcomes, rows: Ints, what: str) -> Ints:
    """`rows` restricted to those with every expert's outcome (see `complete_rows`)."""
    kept = np.intersect1d(rows, data.complete_rows())
    if len(kept) == 0:
        raise ValueError(
            f"no {what} row has an outcome for every expert, so no routing decision can be "
            "scored; give complete outcomes for some queries, or count a missing outcome as a "
            "failure (--missing-as-failure)"
        )
    return kept


def _embed(data: Data, embedder: Embedder, cache: EmbeddingCache | None, chars: int | None) -> F32:
    cache = cache or EmbeddingCache()
    return cache.embed(embedder, [t[:chars] if chars else t for t in data.texts])


def train(
    data: Data,
    kind: TrainKind | str,
    out: Path,
    embedder: Embedder,
    *,
    options: TrainOptions | None = None,
    cache: EmbeddingCache | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> TrainResult:
    """Fit a router of `kind` on `data`, write its artifact to `out`, return its dev metrics."""
    kind = TrainKind(kind)
    options = options or TrainOptions()
    if kind.needs_outcomes and not isinstance(data, RoutingOutcomes):
        raise ValueError(f"router kind {kind.value!r} needs routing outcomes (per-expert scores)")
    vectors = _embed(data, embedder, cache, options.embed_chars)
    split = {
        "dev_fraction": options.dev_fraction,
        "val_fraction": options.val_fraction,
        "seed": options.seed,
        "predefined_split": options.predefined_split,
    }
    if kind.needs_outcomes:
        assert isinstance(data, RoutingOutcomes)
        model, metrics = _train_scorer(kind, data, vectors, options, progress)
        labels = model.coe.categories if model.coe is not None else ()
    else:
        labelled = data.labelled() if isinstance(data, RoutingOutcomes) else data
        rows = _rows(data, options)
        classifier, metrics = _train_classifier(kind, labelled, vectors, rows, options, progress)
        labels = labelled.label_set()
        base = Manifest(kind=f"classifier/{kind.value}", embedder_id="")
        model = TrainedModel(
            base, classifier=classifier, selection=Selection(top_k_mass=options.top_k_mass)
        )
    manifest = replace(
        model.manifest,
        embedder_id=embedder.id,
        data_hash=data.data_hash(),
        labels=tuple(labels),
        params={
            "split": split,
            "hyper": dict(options.hyper),
            "data": data.name,
            "embed_chars": options.embed_chars,
            "missing_as_failure": options.missing_as_failure,
        },
        metrics=metrics,
    )
    written = save_model(out, replace(model, manifest=manifest))
    return TrainResult(out, written, metrics)


def evaluate(
    artifact: Path,
    data: Data,
    embedder: Embedder,
    *,
    cache: EmbeddingCache | None = None,
) -> dict[str, Any]:
    """Metrics of the artifact on `data`: its dev rows if it was trained on `data`, else all."""
    model = load_model(artifact)
    rows = np.arange(len(data), dtype=np.int64)
    where = "all rows"
    if data.data_hash() == model.manifest.data_hash:
        where = "dev split"
        split = model.manifest.params["split"]
        opts = TrainOptions(
            dev_fraction=float(split["dev_fraction"]),
            val_fraction=float(split["val_fraction"]),
            seed=int(split["seed"]),
            predefined_split=bool(split["predefined_split"]),
        )
        rows = _rows(data, opts)[2]
    if model.manifest.params.get("missing_as_failure") and isinstance(data, RoutingOutcomes):
        data = replace(data, scores=data.filled_scores())
    if model.family != "classifier" and isinstance(data, RoutingOutcomes):
        scored = _scorable(data.select_experts(model.manifest.experts), rows, "evaluated")
        if len(scored) < len(rows):
            where += f" ({len(rows) - len(scored)} rows without every expert's outcome skipped)"
        rows = scored
    subset = data.subset(rows)
    vectors = _embed(data, embedder, cache, model.embed_chars)[rows]
    result: dict[str, Any] = {"rows": len(rows), "evaluated_on": where}
    if model.family == "classifier":
        labelled = subset.labelled() if isinstance(subset, RoutingOutcomes) else subset
        y = labelled.label_indices(model.manifest.labels)
        logits = np.log(np.maximum(model.category_probs(list(labelled.texts), vectors), 1e-300))
        metrics = classification_metrics(logits, y, model.manifest.labels, 1.0)
        # the probabilities are the artifact's calibrated ones: report its temperature, and no
        # "uncalibrated" ECE (it would be the same number)
        metrics.pop("ece_uncalibrated")
        metrics["temperature"] = float(getattr(model.classifier, "temperature", 1.0))
        result.update(metrics)
        return result
    if not isinstance(subset, RoutingOutcomes):
        raise ValueError("a scorer artifact is evaluated on routing outcomes")
    result.update(outcome_metrics(model, subset.select_experts(model.manifest.experts), vectors))
    return result


def evaluate_baselines(
    data: RoutingOutcomes, options: TrainOptions | None = None
) -> dict[str, Any]:
    """`coe eval --baselines`: best single, cheapest, random and oracle on the dev rows, and the
    CoE category map (fitted on the train rows, applied with the true category) as a curve."""
    options = options or TrainOptions()
    fit, val, dev = _rows(data, options)
    dev = _scorable(data, dev, "dev")
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
        points = coe_baseline(data.subset(np.sort(np.concatenate([fit, val]))), dev_data)
        result["coe_map_true_category"] = {
            "curve": [point_json(p) for p in points],
            **curve_metrics(points, filled, dev_data.costs, dev_data.experts),
        }
    return result
