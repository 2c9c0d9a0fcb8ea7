"""MMLU and GSM8K, GPT-4-Turbo vs Mixtral-8x7B: the RouteLLM two-model setting.

    .venv/bin/python -m bench.routing.routellm           # ~1 min (embeddings cached)

Cost = share of calls to GPT-4 (RouteLLM's x axis). APGR and CPT(50 %) / CPT(80 %) as RouteLLM
defines them (routers.evaluation). Dev = 20 % (MMLU: stratified by subcategory), seed 0; our
routers are trained on the other 80 % of the same benchmark (in-domain outcome labels), which is
closer to RouteLLM's "arena + golden-labelled MMLU" setting than to its arena-only one.
Published RouteLLM figures (arXiv:2406.18665, Tables 2 and 3) are copied for side-by-side reading.
Writes results/routellm.{json,png}.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bench.routing.common import data_dir, embedder, plot_curves, write_json
from bench.shared_data import shared_outcomes
from routers.training import TrainOptions, hyper_for, train

PUBLISHED = {
    "mmlu": {
        "random": {"apgr": 0.497, "cpt50": 0.5000, "cpt80": 0.8008},
        "matrix factorisation (arena + gold)": {"apgr": 0.597, "cpt50": 0.3546, "cpt80": 0.7140},
        "SW ranking (arena + gold), best": {"apgr": 0.603, "cpt50": 0.3540, "cpt80": 0.7155},
    },
    "gsm8k": {
        "random": {"apgr": 0.497, "cpt50": 0.5000, "cpt80": 0.8008},
        "matrix factorisation (arena + judge)": {"apgr": 0.565, "cpt50": 0.3882, "cpt80": 0.7262},
        "causal LLM (arena + judge), best": {"apgr": 0.622, "cpt50": 0.3364, "cpt80": 0.6326},
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifacts", type=Path, default=None)
    args = parser.parse_args()
    payload: dict[str, Any] = {"published_routellm": PUBLISHED}
    runs = {
        "logistic head": ("heads", {"l2": 1e-3}),
        "matrix factorisation (rank 8)": ("mf", {"rank": 8, "l2": 1e-3}),
        "kNN outcome scorer (k=50)": ("knn-scorer", {"k": 50, "tau": 0.05}),
    }
    curves: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = args.artifacts or Path(tmp)
        for bench in ("mmlu", "gsm8k"):
            data = shared_outcomes(data_dir(bench))
            results: dict[str, Any] = {}
            for label, (kind, hyper) in runs.items():
                m = train(
                    data,
                    kind,
                    out / f"{bench}-{kind}",
                    embedder(),
                    options=TrainOptions(hyper=hyper_for(kind, **hyper)),
                ).metrics
                results[label] = {
                    "apgr": m.get("apgr"),
                    "cpt50": m.get("cpt50"),
                    "cpt80": m.get("cpt80"),
                    "aiq": m["aiq"],
                    "curve": m["curve"],
                }
                results["baselines"] = m["baselines"]
                curves[f"{bench}: {label}"] = m["curve"]
                print(
                    f"{bench:6s} {label:32s} APGR {m.get('apgr', float('nan')):.3f}"
                    f"  CPT50 {m.get('cpt50')}  CPT80 {m.get('cpt80')}"
                )
            payload[bench] = {"rows": len(data), "routers": results}
    write_json("routellm", payload)
    plot_curves(
        "routellm",
        "MMLU / GSM8K dev: accuracy vs share of GPT-4 calls (vs Mixtral-8x7B)",
        curves,
        [],
        xlabel="share of queries sent to GPT-4",
    )


if __name__ == "__main__":
    main()
