"""RouterBench subset (ARC-Challenge, MBPP, Winogrande; 11 LLMs, USD cost per query).

    .venv/bin/python -m bench.routing.routerbench        # ~1 min (embeddings cached)

Target: at least GPT-4's accuracy at no more than 25 % of GPT-4's cost. Dev = 20 % stratified by
task, seed 0, scored on the rows with every model's outcome (ARC-Challenge has 154 empty
cells); each router's operating point is picked on a validation part of the train rows
with max_cost = 25 % of GPT-4's mean cost on the train rows. Writes results/routerbench.{json,png}.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.routing.common import (
    data_dir,
    embed,
    embedder,
    in_sample_heads_ceiling,
    plot_curves,
    write_json,
)
from bench.shared_data import shared_outcomes
from routers.training import TrainOptions, hyper_for, train
from routers.training.datasets import RoutingOutcomes, train_dev_split

GPT4 = "gpt-4-1106-preview"
SHARE = 0.25


Policy = tuple[int, ...]
"""One model (a 1-tuple), or a unanimity cascade of 2-4 non-GPT-4 models: call them all, keep
their answer when they agree, else call GPT-4."""


def _policies(n_experts: int, g: int) -> list[Policy]:
    others = [i for i in range(n_experts) if i != g]
    singles: list[Policy] = [(m,) for m in range(n_experts)]
    return singles + [c for r in (2, 3, 4) for c in itertools.combinations(others, r)]


def _policy_point(
    policy: Policy, scores: np.ndarray, costs: np.ndarray, g: int, *, binary: bool, optimistic: bool
) -> tuple[float, float]:
    """(mean accuracy, summed cost) of `policy` on these rows.

    Winogrande has two options, so agreement follows from correctness exactly (`binary`).
    Elsewhere a wrong answer is unknown: on rows where every cascade model is wrong,
    `optimistic` credits GPT-4's score without GPT-4's cost (an upper bound on both axes), and
    pessimistic takes them as agreeing on one wrong answer (a lower bound on accuracy)."""
    cols = list(policy)
    if len(cols) == 1:
        return float(scores[:, cols[0]].mean()), float(costs[:, cols[0]].sum())
    s = scores[:, cols]
    right, wrong = (s == 1).all(axis=1), (s == 0).all(axis=1)
    agree = right | wrong
    quality = np.where(agree, s[:, 0], scores[:, g])
    if optimistic and not binary:
        quality = np.where(right, 1.0, scores[:, g])
    return float(quality.mean()), float(costs[:, cols].sum() + costs[~agree, g].sum())


def _pick_policies(sub: RoutingOutcomes, g: int, *, optimistic: bool) -> dict[str, Policy]:
    """Per task, the policies with the best overall accuracy within SHARE of GPT-4's cost on
    these rows (each task's Pareto front, then every combination of the fronts)."""
    assert sub.labels is not None
    total = float(sub.costs[:, g].sum())
    labels = np.array(sub.labels)
    fronts: dict[str, list[tuple[float, float, Policy]]] = {}
    for task in sorted(set(labels)):
        rows = labels == task
        points = []
        for policy in _policies(len(sub.experts), g):
            q, c = _policy_point(
                policy,
                sub.scores[rows],
                sub.costs[rows],
                g,
                binary=task == "winogrande",
                optimistic=optimistic,
            )
            points.append((q * rows.mean(), c / total, policy))
        points.sort(key=lambda p: (p[1], -p[0]))
        front, best = [], -1.0
        for point in points:  # each point of the front beats every cheaper one
            if point[0] > best:
                front.append(point)
                best = point[0]
        fronts[task] = front
    best_q, best_pick = -1.0, None
    for pick in itertools.product(*fronts.values()):
        q, c = sum(p[0] for p in pick), sum(p[1] for p in pick)
        if c <= SHARE and q > best_q:
            best_q, best_pick = q, pick
    assert best_pick is not None
    return {task: p[2] for task, p in zip(fronts, best_pick, strict=True)}


def _apply(
    sub: RoutingOutcomes, g: int, picks: dict[str, Policy], *, optimistic: bool
) -> dict[str, float]:
    assert sub.labels is not None
    labels = np.array(sub.labels)
    quality, cost = 0.0, 0.0
    for task, policy in picks.items():
        rows = labels == task
        q, c = _policy_point(
            policy,
            sub.scores[rows],
            sub.costs[rows],
            g,
            binary=task == "winogrande",
            optimistic=optimistic,
        )
        quality += q * rows.mean()
        cost += c
    return {
        "dev_accuracy": quality,
        "dev_cost_share_of_gpt4": cost / float(sub.costs[:, g].sum()),
    }


def answer_cascades(
    data: RoutingOutcomes, train_rows: np.ndarray, dev: np.ndarray
) -> dict[str, Any]:
    """Per-task answer-aware cascades within 25 % of GPT-4's cost, the task taken as known.

    `ceiling`: each task's policy picked *on the dev rows themselves*, wrong answers credited
    optimistically: a ceiling of routing plus output-level agreement, not a result.
    `chosen_on_train`: picked on the train rows (pessimistic), then scored on dev under both
    assumptions: the range a real cascade of this kind would land in."""
    g = data.experts.index(GPT4)
    sub = data.subset(dev)
    names = dict(enumerate(data.experts))

    def readable(picks: dict[str, Policy]) -> dict[str, list[str]]:
        return {task: [names[i] for i in policy] for task, policy in picks.items()}

    ceiling = _pick_policies(sub, g, optimistic=True)
    chosen = _pick_policies(data.subset(train_rows), g, optimistic=False)
    return {
        "gpt4_dev_accuracy": float(sub.scores[:, g].mean()),
        "ceiling": {**_apply(sub, g, ceiling, optimistic=True), "policies": readable(ceiling)},
        "chosen_on_train": {
            "dev_optimistic": _apply(sub, g, chosen, optimistic=True),
            "dev_pessimistic": _apply(sub, g, chosen, optimistic=False),
            "policies": readable(chosen),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifacts", type=Path, default=None)
    args = parser.parse_args()
    data = shared_outcomes(data_dir("routerbench_subset"))
    train_rows, dev = train_dev_split(len(data), 0.2, 0, data.labels)
    dev = np.intersect1d(dev, data.complete_rows())  # where every model's outcome is known
    g = data.experts.index(GPT4)
    budget = SHARE * float(data.costs[train_rows, g].mean())
    gpt4_dev_q = float(data.scores[dev, g].mean())
    gpt4_dev_c = float(data.costs[dev, g].mean())
    runs = {
        "per-expert logistic heads": ("heads", {"l2": 1e-3}),
        "matrix factorisation (rank 8)": ("mf", {"rank": 8, "l2": 1e-3}),
        "kNN outcome scorer (k=30)": ("knn-scorer", {"k": 30, "tau": 0.05}),
        "CoE: task classifier -> task x expert table": ("coe", {}),
    }
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = args.artifacts or Path(tmp)
        for label, (kind, hyper) in runs.items():
            m = train(
                data,
                kind,
                out / kind,
                embedder(),
                options=TrainOptions(max_cost=budget, hyper=hyper_for(kind, **hyper)),
            ).metrics
            op = m["operating_point"]
            results[label] = {
                "dev_accuracy": op["quality"],
                "dev_cost_usd": op["cost"],
                "dev_cost_share_of_gpt4": op["cost"] / gpt4_dev_c,
                "aiq": m["aiq"],
                "max_dev_accuracy_any_cost": max(p["quality"] for p in m["curve"]),
                "usage": m["usage"],
                "curve": m["curve"],
            }
            results["baselines"] = m["baselines"]
            results["coe_map_true_category"] = m["coe_map_true_category"]
            print(
                f"{label:46s} dev acc {op['quality']:.4f}"
                f" at {op['cost'] / gpt4_dev_c:.3f} x GPT-4 cost"
            )
    sub = data.subset(dev)
    ceiling = in_sample_heads_ceiling(
        embed(data)[dev], sub.scores, sub.mean_costs(), sub.costs, SHARE * gpt4_dev_c
    )
    payload = {
        "dataset": "routerbench_subset (11 LLMs, USD)",
        "split": f"dev = 20 % stratified by task, seed 0, rows with every model's outcome "
        f"({len(dev)} queries)",
        "gpt4_dev_accuracy": gpt4_dev_q,
        "gpt4_dev_cost_usd": gpt4_dev_c,
        "budget_usd_train": budget,
        "routers": results,
        "heads_fitted_on_dev_ceiling": {
            "dev_accuracy": ceiling["quality"],
            "dev_cost_share_of_gpt4": ceiling["cost"] / gpt4_dev_c,
        },
        "answer_cascades": answer_cascades(
            data, np.intersect1d(train_rows, data.complete_rows()), dev
        ),
    }
    print("answer-aware cascades:", payload["answer_cascades"])
    write_json("routerbench", payload)
    curves = {
        k: v["curve"]
        for k, v in results.items()
        if isinstance(v, dict) and "curve" in v and not k.startswith("coe_map")
    }
    curves["CoE map, true task (upper reference)"] = results["coe_map_true_category"]["curve"]
    plot_curves(
        "routerbench",
        "RouterBench subset dev: accuracy vs USD per query",
        curves,
        results["baselines"],
        xlabel="mean cost per query (USD)",
        budget=SHARE * gpt4_dev_c,
        target=gpt4_dev_q,
        logx=True,
    )


if __name__ == "__main__":
    main()
