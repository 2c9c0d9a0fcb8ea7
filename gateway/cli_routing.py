"""`coe train` and `coe eval`: fit a router on your data, measure it, save it as an artifact.

    coe train --data D --router KIND --out ARTIFACT [--max-cost X | --min-quality Q]
              [--fusion adaptive] [--experts A,B,..] [--costs COSTS.csv]
    coe eval --artifact A --data D [--fusion none|vote|cascade|adaptive [--k N]]
             [--experts A,B,..] [--costs COSTS.csv] [--json]
    coe eval --baselines --data D [--json] [--out-dir DIR]

`--data` is a labelled-queries JSONL (`text`, `label`), a routing-outcomes JSONL/CSV (`text`, a
score per expert, optional cost and answer per expert), or a folder of routing outcomes
(questions.jsonl + outcomes.csv, as MMLU-Pro's logs). Embeddings are cached on disk, so re-runs
skip the embedding step. The work is done by `routers.training` (imported only when a command
runs, so `coe serve` never loads it); this module parses, calls and prints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from routers.config import EmbedderConfig
from routers.embedder import Embedder
from routers.factory import build_embedder

__all__ = ["register"]

DataOpt = Annotated[
    Path,
    typer.Option("--data", "-d", help="JSONL or CSV file, or outcomes folder.", exists=True),
]
ExpertsOpt = Annotated[
    str | None,
    typer.Option(help="Comma-separated experts: restrict the pool to those deployed."),
]
CostsOpt = Annotated[
    Path | None,
    typer.Option(
        help="CSV of per-expert costs (columns expert,cost); experts without one are left out.",
        exists=True,
        dir_okay=False,
    ),
]


def _pool(dataset: Any, experts: str | None, costs: Path | None, *, restrict: bool = True) -> Any:
    """The outcomes with per-expert `costs` and (when `restrict`) only `experts`."""
    from routers.training.datasets import DatasetError
    from routers.training.folders import load_expert_costs

    try:
        if costs is not None:
            dataset = dataset.with_expert_costs(load_expert_costs(costs))
        if restrict and experts is not None:
            dataset = dataset.select_experts(_names(experts))
    except DatasetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    return dataset


def _names(experts: str) -> list[str]:
    names = [name.strip() for name in experts.split(",") if name.strip()]
    if not names:
        typer.echo("error: --experts names no expert", err=True)
        raise typer.Exit(2)
    return names


JsonOpt = Annotated[bool, typer.Option("--json", help="Print the metrics as one JSON object.")]


def _load(path: Path, *, outcomes: bool) -> Any:
    """Routing outcomes, or labelled queries (a file of either)."""
    from routers.training.datasets import DatasetError
    from routers.training.loaders import load_labelled, load_outcomes

    if outcomes and _labelled_only(path):
        typer.echo(
            f"error: {path} holds labelled queries (text, label), not routing outcomes "
            "(a score per expert for each query)",
            err=True,
        )
        raise typer.Exit(2)
    try:
        if outcomes or path.is_dir() or path.suffix == ".csv" or not _has_label(path):
            return load_outcomes(path)
        return load_labelled(path)
    except DatasetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _first_record(path: Path) -> dict[str, Any] | None:
    """A JSONL file's first record; None when it has none or it is not a JSON object (the
    loaders then name the bad line)."""
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    return None
                return record if isinstance(record, dict) else None
    return None


def _has_label(path: Path) -> bool:
    """Whether a JSONL file's first record has a `label` (labelled queries, not outcomes)."""
    record = _first_record(path)
    return record is None or "label" in record


def _labelled_only(path: Path) -> bool:
    """A JSONL file of labelled queries without scores (no routing outcomes in it)."""
    if not path.is_file() or path.suffix == ".csv":
        return False
    record = _first_record(path)
    return record is not None and "label" in record and "scores" not in record


def _embedder() -> Embedder:
    return build_embedder(EmbedderConfig(cache_size=0))


def _emit(metrics: dict[str, Any], as_json: bool) -> None:
    """One JSON object (`--json`), or scalars then a cost/quality table of the named points."""
    if as_json:
        typer.echo(json.dumps(metrics, default=_jsonable))
        return
    for key, value in metrics.items():
        if not isinstance(value, dict | list):
            typer.echo(f"{key:28} {value}")
    points = (
        [("operating point", metrics["operating_point"])] if "operating_point" in metrics else []
    )
    points += [(p["label"], p) for p in metrics.get("baselines", [])]
    if points:
        typer.echo(f"\n{'':36} {'mean cost':>12} {'quality':>9}")
        for label, point in points:
            typer.echo(f"{label[:36]:36} {point['cost']:>12.6g} {point['quality']:>9.4f}")
    if "val_operating_point" in metrics:
        val = metrics["val_operating_point"]
        typer.echo(
            f"{'chosen on val (' + str(val['rows']) + ' rows)':36}"
            f" {val['cost']:>12.6g} {val['quality']:>9.4f}"
            f"   (standard errors: cost {val['cost_se']:.3g}, quality {val['quality_se']:.3g})"
        )
    for name in ("aiq", "apgr", "cpt50_cost", "cpt80_cost"):
        for scope, holder in (
            ("router", metrics),
            ("CoE map", metrics.get("coe_map_true_category", {})),
        ):
            if holder.get(name) is not None:
                typer.echo(f"{scope + ' ' + name:28} {holder[name]:.6g}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value).__name__)


def train_command(
    data: DataOpt,
    router: Annotated[
        str,
        typer.Option(
            help="logistic | mlp | knn | centroid | hybrid | coe | heads | mf | knn-scorer"
        ),
    ],
    out: Annotated[Path, typer.Option(help="Artifact directory to write.")],
    max_cost: Annotated[float | None, typer.Option(help="Operating point: mean cost <= X.")] = None,
    min_quality: Annotated[
        float | None, typer.Option(help="Operating point: quality >= Q.")
    ] = None,
    cost_weight: Annotated[float | None, typer.Option(help="Fixed quality-cost trade-off.")] = None,
    top_k_mass: Annotated[float, typer.Option(help="Adaptive top-k: cumulative p.")] = 0.0,
    fusion: Annotated[
        str,
        typer.Option(help="adaptive: choose a fan-out rule within --max-cost and record it."),
    ] = "none",
    experts: ExpertsOpt = None,
    costs: CostsOpt = None,
    seed: int = 0,
    dev_fraction: float = 0.2,
    predefined_split: Annotated[bool, typer.Option(help="Use the data's own split.")] = False,
    missing_as_failure: Annotated[
        bool, typer.Option(help="Count a missing outcome as a failure (default: unknown).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fit a router and write its artifact (manifest.json + weights.npz); print dev metrics."""
    from routers.training import SplitSpec, TrainKind, TrainOptions, train
    from routers.training.embed_cache import EmbeddingCache

    try:
        kind = TrainKind(router)
    except ValueError:
        typer.echo(
            f"error: unknown router kind {router!r} "
            f"(one of {', '.join(k.value for k in TrainKind)})",
            err=True,
        )
        raise typer.Exit(2) from None
    if sum(v is not None for v in (max_cost, min_quality, cost_weight)) > 1:
        typer.echo("error: give at most one of --max-cost, --min-quality, --cost-weight", err=True)
        raise typer.Exit(2)
    if kind.needs_outcomes and _labelled_only(data):
        typer.echo(
            f"error: router kind {kind.value!r} learns from routing outcomes (a score per "
            f"expert for each query), but {data} holds labelled queries (text, label); "
            "train a classifier on it (logistic, mlp, knn, centroid, hybrid)",
            err=True,
        )
        raise typer.Exit(2)
    if fusion not in ("none", "adaptive"):
        typer.echo(f"error: --fusion must be none or adaptive, not {fusion!r}", err=True)
        raise typer.Exit(2)
    dataset = _load(data, outcomes=kind.needs_outcomes)
    if kind.needs_outcomes:
        dataset = _pool(dataset, experts, costs)
    elif experts is not None or costs is not None:
        typer.echo("error: --experts and --costs apply to expert scorers", err=True)
        raise typer.Exit(2)
    options = TrainOptions(
        split=SplitSpec(dev_fraction=dev_fraction, seed=seed, predefined=predefined_split),
        max_cost=max_cost,
        min_quality=min_quality,
        cost_weight=cost_weight,
        top_k_mass=top_k_mass,
        missing_as_failure=missing_as_failure,
        fusion_adaptive=fusion == "adaptive",
    )
    try:
        result = train(
            dataset,
            kind,
            out,
            _embedder(),
            options=options,
            cache=EmbeddingCache(),
            progress=lambda message: typer.echo(message, err=True),
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not as_json:
        typer.echo(f"wrote {result.artifact}", err=True)
    _emit(result.metrics, as_json)


def eval_command(
    data: DataOpt,
    artifact: Annotated[Path | None, typer.Option(help="Artifact to evaluate.")] = None,
    baselines: Annotated[bool, typer.Option(help="Evaluate the baselines instead.")] = False,
    out_dir: Annotated[Path | None, typer.Option(help="Write metrics JSON + PNG here.")] = None,
    fusion: Annotated[
        str | None,
        typer.Option(help="none | vote | cascade | adaptive: evaluate that fusion policy."),
    ] = None,
    k: Annotated[int, typer.Option(help="Candidates of a fixed vote or cascade.", min=1)] = 3,
    experts: ExpertsOpt = None,
    costs: CostsOpt = None,
    seed: int = 0,
    dev_fraction: float = 0.2,
    as_json: JsonOpt = False,
) -> None:
    """Metrics of an artifact (its dev rows when it was trained on this data), or baselines;
    with --fusion, the accuracy, mean cost and mean experts called of a fusion policy."""
    from routers.artifact import ArtifactError, ArtifactFamily, read_manifest
    from routers.training import SplitSpec, evaluate, evaluate_baselines
    from routers.training.embed_cache import EmbeddingCache

    if (artifact is None) == (not baselines):
        typer.echo("error: give --artifact A or --baselines", err=True)
        raise typer.Exit(2)
    try:
        if baselines:
            split = SplitSpec(seed=seed, dev_fraction=dev_fraction)
            metrics = evaluate_baselines(_load(data, outcomes=True), split)
        else:
            assert artifact is not None
            if fusion not in (None, "none", "vote", "cascade", "adaptive"):
                typer.echo(
                    f"error: --fusion must be none, vote, cascade or adaptive, not {fusion!r}",
                    err=True,
                )
                raise typer.Exit(2)
            scorer = read_manifest(artifact).family is ArtifactFamily.SCORER
            dataset = _load(data, outcomes=scorer)
            if scorer:
                dataset = _pool(dataset, experts, costs, restrict=False)
            metrics = evaluate(
                artifact,
                dataset,
                _embedder(),
                cache=EmbeddingCache(),
                fusion=fusion,
                k=k,
                experts=None if experts is None else _names(experts),
            )
    except (ArtifactError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if out_dir is not None:
        _write(out_dir, metrics)
    _emit(metrics, as_json)


def _write(out_dir: Path, metrics: dict[str, Any]) -> None:
    try:
        from routers.training.plots import plot_metrics
    except ImportError as exc:  # matplotlib: the `train` extra
        typer.echo(f"error: --out-dir needs matplotlib (the train extra): {exc}", err=True)
        raise typer.Exit(2) from None

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=_jsonable) + "\n")
    plot_metrics(metrics, out_dir / "metrics.png")


def register(app: typer.Typer) -> None:
    """Add `train` and `eval` to the `coe` app."""
    app.command("train")(train_command)
    app.command("eval")(eval_command)
