"""RouterBench subset (ARC-Challenge, MBPP, Winogrande; 11 LLMs, USD cost per query).

    .venv/bin/python -m bench.routing.routerbench        # ~1 min (embeddings cached)

Target: at least GPT-4's accuracy at no more than 25 % of GPT-4's cost. Dev = 20 % stratified by
task, seed 0, scored on the rows with every model's outcome (ARC-Challenge has 154 empty
cells); each router's operating point is picked on a validation part of the train rows
with max_cost = 25 % of GPT-4's mean cost on the train rows. Writes results/routerbench.{json,png}.
"""

from __future__ import annotations

import argparse
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
from routers.datasets import load_outcomes, train_dev_split
from routers.training import TrainOptions, train

GPT4 = "gpt-4-1106-preview"
SHARE = 0.25


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifacts", type=Path, default=None)
    args = parser.parse_args()
    data = load_outcomes(data_dir("routerbench_subset"))
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
                options=TrainOptions(max_cost=budget, hyper=hyper),
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
    }
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
