"""RouterDC's 7 open ~7B LLMs on RouterDC's own train/test split (and its out-of-distribution set).

    .venv/bin/python -m bench.routing.routerdc           # ~2 min (embeddings cached)

Routers are fitted on RouterDC's `train` rows (validation part inside them), evaluated on its
`test` rows (in-distribution: MMLU, GSM8K, CMMLU, ARC-C/E, HumanEval) and on its `ood` rows
(MATH prealgebra, MBPP, C-Eval, HumanEval-JS). No costs: every model counts 1, the router
takes the best predicted model. Accuracy per task: multiple-choice tasks count a question right
when the chosen model's score is > 0 (its top choice was the gold option); generation tasks use
the score itself (share of sampled answers that were correct). The task average is the
unweighted mean over tasks, as RouterDC reports it. RouterDC (arXiv:2409.19886, abstract) reports
+2.76 points (in-distribution) and +1.90 points (out-of-distribution) over the best single LLM.
Writes results/routerdc.json.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.routing.common import data_dir, embed, embedder, write_json
from bench.shared_data import shared_outcomes
from routers.classifiers import Queries
from routers.trained_model import load_model
from routers.training import SplitSpec, TrainOptions, hyper_for, train
from routers.training.datasets import RoutingOutcomes

MULTIPLE_CHOICE = {"mmlu", "cmmlu", "ceval", "arc_challenge", "arc_easy"}


def accuracy_table(data: RoutingOutcomes, choice: np.ndarray) -> dict[str, Any]:
    """Per-task accuracy of a choice per row, and of every single model, plus task averages."""
    assert data.labels is not None
    labels = np.array(data.labels)
    filled = data.filled_scores()
    mc = np.isin(labels, list(MULTIPLE_CHOICE))
    acc = np.where(mc[:, None], (filled > 0).astype(float), filled)
    rows = np.arange(len(data))
    tasks = sorted(set(data.labels))
    routed = {t: float(acc[rows, choice][labels == t].mean()) for t in tasks}
    singles = {
        e: {t: float(acc[labels == t, j].mean()) for t in tasks} for j, e in enumerate(data.experts)
    }
    avg = {e: float(np.mean(list(v.values()))) for e, v in singles.items()}
    best = max(avg, key=lambda e: avg[e])
    oracle = {t: float(acc[labels == t].max(axis=1).mean()) for t in tasks}
    return {
        "router_per_task": routed,
        "router_task_average": float(np.mean(list(routed.values()))),
        "best_single": best,
        "best_single_task_average": avg[best],
        "single_task_averages": avg,
        "best_single_per_task": singles[best],
        "oracle_task_average": float(np.mean(list(oracle.values()))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifacts", type=Path, default=None)
    args = parser.parse_args()
    data = shared_outcomes(data_dir("routerdc_7models"))
    assert data.split is not None
    vectors = embed(data)
    split = np.array(data.split)
    runs = {
        "per-expert logistic heads": ("heads", {"l2": 1e-3}),
        "matrix factorisation (rank 8)": ("mf", {"rank": 8, "l2": 1e-3}),
        "kNN outcome scorer (k=50)": ("knn-scorer", {"k": 50, "tau": 0.05}),
        "CoE: task classifier -> task x expert table": ("coe", {}),
    }
    payload: dict[str, Any] = {
        "dataset": "routerdc_7models, RouterDC's split "
        "(train -> fit/val, test = in-distribution, ood)",
        "published_routerdc_gain_over_best_single": {
            "in_distribution": 2.76,
            "out_of_distribution": 1.90,
        },
        "routers": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        out = args.artifacts or Path(tmp)
        for label, (kind, hyper) in runs.items():
            opts = TrainOptions(split=SplitSpec(predefined=True), hyper=hyper_for(kind, **hyper))
            train(data, kind, out / kind, embedder(), options=opts)
            model = load_model(out / kind)
            entry = {}
            for part in ("test", "ood"):
                rows = np.flatnonzero(split == part)
                sub = data.subset(rows)
                choice = model.choose(Queries(sub.texts, vectors[rows]))
                entry[part] = accuracy_table(sub, choice)
                gain = 100 * (
                    entry[part]["router_task_average"] - entry[part]["best_single_task_average"]
                )
                entry[part]["gain_over_best_single_points"] = gain
                print(
                    f"{label:32s} {part:5s} router {entry[part]['router_task_average']:.4f}"
                    f"  best single {entry[part]['best_single_task_average']:.4f}"
                    f" ({entry[part]['best_single']})  gain {gain:+.2f} pts"
                )
            payload["routers"][label] = entry
    write_json("routerdc", payload)


if __name__ == "__main__":
    main()
