"""Output-level fusion on MMLU-Pro's logged answers: top-1 routing, fixed top-k votes, adaptive
fan-out, cascades, the best single model and the oracle, for two pools.

    .venv/bin/python -m bench.fusion.run            # ~6 min on 2 cores (embeddings cached)

Pools: `small` (the 17 models with at most 13 B active parameters) and `full` (the 27 open
models; the two Gemini models have no public parameter count). Cost of a query = active
parameters (B) summed over the experts called. Split: `coe train`'s default (dev = 20 %
stratified by category, seed 0; fit / val inside the rest). A per-expert logistic-heads scorer
is fitted on the fit rows (`coe train --router heads`); everything chosen (cost weights, the
adaptive rule) is chosen on the val rows, and every reported number is on the dev rows.
The policies are `routers.training.fusion_eval`'s, the rules the gateway applies live.
Writes results/fusion.json and results/fusion.png.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.routing.common import data_dir, embedder
from bench.shared_data import MMLU_PRO_ACTIVE_PARAMS_B, shared_outcomes
from routers.classifiers import Queries
from routers.trained_model import load_model
from routers.training import train
from routers.training.datasets import RoutingOutcomes
from routers.training.embed_cache import EmbeddingCache
from routers.training.fusion_eval import (
    FusionPolicy,
    Logged,
    PolicyKind,
    apply_policy,
    logged_from,
    search_adaptive,
)
from routers.training.operating import cost_weight_grid
from routers.training.splits import SplitSpec, scorable, split_rows

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BUDGETS = {"small": (10.0, 15.0, 20.0, 25.0, 30.0, 45.0), "full": (20, 30, 45, 60, 100, 150)}


def pools(data: RoutingOutcomes) -> dict[str, RoutingOutcomes]:
    small = [e for e in data.experts if MMLU_PRO_ACTIVE_PARAMS_B[e] <= 13]
    return {"small": data.select_experts(small), "full": data}


def fitted(data: RoutingOutcomes, out: Path) -> tuple[Logged, Logged]:
    """(val, dev) logs of a heads scorer fitted on the fit rows."""
    train(data, "heads", out, embedder(), cache=EmbeddingCache())
    model = load_model(out)
    vectors = EmbeddingCache().embed(embedder(), list(data.texts))
    rows = split_rows(data, SplitSpec())

    def logged(picked: np.ndarray, what: str) -> Logged:
        picked = scorable(data, picked, what)
        sub = data.subset(picked)
        return logged_from(model, sub, Queries(sub.texts, vectors[picked]))

    return logged(rows.val, "val"), logged(rows.dev, "dev")


def point(outcome: Any, **extra: Any) -> dict[str, Any]:
    return {**outcome.to_json(), **extra}


def curve(dev: Logged, kind: PolicyKind, k: int, weights: Sequence[float]) -> list[dict[str, Any]]:
    """The policy at every cost weight, on dev (a curve: nothing is chosen on it)."""
    return [
        point(apply_policy(dev, FusionPolicy(kind, cost_weight=w, k=k)), cost_weight=w)
        for w in weights
    ]


def at_budget(val: Logged, dev: Logged, kind: PolicyKind, k: int, budget: float,
              weights: Sequence[float]) -> dict[str, Any] | None:  # fmt: skip
    """The fixed policy's best cost weight on val within `budget`, scored on dev."""
    fits = [
        (o.accuracy, -o.avg_cost, w)
        for w in weights
        for o in [apply_policy(val, FusionPolicy(kind, cost_weight=w, k=k))]
        if o.avg_cost <= budget
    ]
    if not fits:
        return None
    _, _, w = max(fits)
    return point(apply_policy(dev, FusionPolicy(kind, cost_weight=w, k=k)), cost_weight=w)


def study(name: str, data: RoutingOutcomes, out: Path) -> dict[str, Any]:
    start = time.perf_counter()
    val, dev = fitted(data, out / name)
    weights = cost_weight_grid(val.expert_costs, 40).tolist()
    budgets: list[dict[str, Any]] = []
    for budget in BUDGETS[name]:
        policy, on_val = search_adaptive(val, max_cost=budget, cost_weights=weights)
        row: dict[str, Any] = {
            "budget": budget,
            "adaptive": point(
                apply_policy(dev, policy), rule=policy.describe(), val=on_val.to_json()
            ),
            "top1": at_budget(val, dev, PolicyKind.NONE, 1, budget, weights),
        }
        for k in (3, 5):
            row[f"vote_k{k}"] = at_budget(val, dev, PolicyKind.VOTE, k, budget, weights)
            row[f"cascade_k{k}"] = at_budget(val, dev, PolicyKind.CASCADE, k, budget, weights)
        budgets.append(row)
        print(f"{name:5} {budget:6.0f}  adaptive {row['adaptive']['accuracy']:.4f} "
              f"@{row['adaptive']['avg_cost']:6.1f}  top-1 "
              f"{row['top1']['accuracy'] if row['top1'] else float('nan'):.4f}")  # fmt: skip
    singles = dev.scores.mean(axis=0)
    best = int(np.argmax(singles))
    return {
        "experts": list(data.experts),
        "dev_rows": len(dev.scores),
        "val_rows": len(val.scores),
        "best_single": {
            "expert": data.experts[best],
            "accuracy": float(singles[best]),
            "avg_cost": float(dev.expert_costs[best]),
        },
        "oracle": {"accuracy": float(dev.scores.max(axis=1).mean())},
        "curves": {
            "top1": curve(dev, PolicyKind.NONE, 1, weights),
            "vote_k3": curve(dev, PolicyKind.VOTE, 3, weights),
            "vote_k5": curve(dev, PolicyKind.VOTE, 5, weights),
            "cascade_k5": curve(dev, PolicyKind.CASCADE, 5, weights[::4]),
        },
        "budgets": budgets,
        "seconds": time.perf_counter() - start,
    }


def plot(payload: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for ax, (name, result) in zip(axes, payload["pools"].items(), strict=True):
        styles = {"top1": "C0-", "vote_k3": "C2--", "vote_k5": "C3--", "cascade_k5": "C4:"}
        for key, style in styles.items():
            pts = sorted((p["avg_cost"], p["accuracy"]) for p in result["curves"][key])
            ax.plot(*zip(*pts, strict=True), style, label=key.replace("_", " "), lw=1.2)
        adaptive = [
            (b["adaptive"]["avg_cost"], b["adaptive"]["accuracy"]) for b in result["budgets"]
        ]
        ax.plot(*zip(*adaptive, strict=True), "ko-", label="adaptive (rule chosen on val)")
        single = result["best_single"]
        ax.plot(single["avg_cost"], single["accuracy"], "r*", ms=12,
                label=f"best single ({single['expert']})")  # fmt: skip
        oracle = result["oracle"]["accuracy"]
        ax.plot([], [], " ", label=f"oracle (perfect top-1): {oracle:.3f}")
        ax.set_ylim(0.40, max(b["adaptive"]["accuracy"] for b in result["budgets"]) + 0.06)
        ax.set_title(f"MMLU-Pro dev, {name} pool ({len(result['experts'])} models)")
        ax.set_xlabel("mean active parameters called per query (B)")
        ax.set_ylabel("accuracy")
        ax.set_xlim(0, max(b["budget"] for b in result["budgets"]) * 1.6)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plot-only", action="store_true", help="redraw from results/")
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    if args.plot_only:
        plot(json.loads((RESULTS / "fusion.json").read_text()), RESULTS / "fusion.png")
        return
    data = shared_outcomes(data_dir("mmlu_pro"))
    with tempfile.TemporaryDirectory() as tmp:
        payload = {
            "dataset": "mmlu_pro: cost = active params (B) summed over the experts called",
            "split": "coe train's default: dev 20 % stratified by category, seed 0; "
            "the scorer fitted on fit rows, rules and cost weights chosen on val rows",
            "pools": {name: study(name, pool, Path(tmp)) for name, pool in pools(data).items()},
        }
    (RESULTS / "fusion.json").write_text(json.dumps(payload, indent=1) + "\n")
    plot(payload, RESULTS / "fusion.png")


if __name__ == "__main__":
    main()
