"""Peer benchmark: RouteLLM's own matrix-factorisation router, trained on our split and data.

    bash bench/peers/routellm_mf.sh          # setup (once) + export + peer training + score

RouteLLM's published MF router is a checkpoint on the Hugging Face hub (not reachable here) and
embeds with OpenAI's text-embedding-3-small. What *is* reproducible is its training code, which
the PyPI package ships (`routellm.routers.matrix_factorization.train_matrix_factorization`:
`MFModel_Train`, `PairwiseDataset`, `train_loops`, with the hyper-parameters of its `__main__`).
So the peer gets exactly what our routers get on the RouteLLM setting of
`bench/routing/routellm.py` (MMLU and GSM8K, GPT-4-Turbo vs Mixtral-8x7B): the same MiniLM
vectors, the same fit rows to learn from, the val rows as its test set, and it is scored on the
same dev rows with the same APGR / CPT code (`routers.evaluation`). Pairwise labels follow its
script: a query where exactly one model is right is a win for that model; ties are dropped.

This module runs in the project's venv; the peer side (`routellm_mf_peer.py`) runs in the
RouteLLM venv (`routellm_setup.sh`), and the two exchange plain .npy / .json files:

    python -m bench.peers.routellm_mf export DIR   vectors, scores and split per benchmark
    <routellm venv>/python bench/peers/routellm_mf_peer.py DIR    trains, writes dev win rates
    python -m bench.peers.routellm_mf score DIR    APGR / CPT of the peer next to ours
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.routing.common import RESULTS, data_dir, embed, embedder
from bench.shared_data import shared_outcomes
from routers.classifiers import Queries
from routers.trained_model import load_model
from routers.training import TrainOptions, hyper_for, train
from routers.training.datasets import RoutingOutcomes, train_dev_split
from routers.training.evaluation import apgr, cpt

BENCHES = ("mmlu", "gsm8k")
STRONG, WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
OUT = Path(__file__).resolve().parent / "results" / "routellm_mf.json"
OURS = {  # as bench/routing/routellm.py trains them
    "ours: logistic head": ("heads", {"l2": 1e-3}),
    "ours: matrix factorisation (rank 8)": ("mf", {"rank": 8, "l2": 1e-3}),
}


def split(data: RoutingOutcomes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fit, val, dev) as `routers.training` derives them with the default TrainOptions."""
    train_rows, dev = train_dev_split(len(data), 0.2, 0, data.labels)
    strata = None if data.labels is None else [data.labels[i] for i in train_rows]
    fit_i, val_i = train_dev_split(len(train_rows), 0.2, 1, strata)
    return train_rows[fit_i], train_rows[val_i], dev


def export(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for bench in BENCHES:
        data = shared_outcomes(data_dir(bench))
        fit, val, dev = split(data)
        np.save(folder / f"{bench}_vectors.npy", embed(data).astype(np.float32))
        cols = [data.experts.index(STRONG), data.experts.index(WEAK)]
        np.save(folder / f"{bench}_scores.npy", np.nan_to_num(data.scores[:, cols], nan=0.0))
        rows = {"fit": fit.tolist(), "val": val.tolist(), "dev": dev.tolist()}
        (folder / f"{bench}_split.json").write_text(json.dumps(rows))
        print(f"{bench}: {len(data)} queries, fit {len(fit)}, val {len(val)}, dev {len(dev)}")


def curve(win_rate: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(share of GPT-4 calls, accuracy) when the queries with the highest predicted win rate
    of GPT-4 go to GPT-4, at every share k / n (ties broken by row order)."""
    order = np.argsort(-win_rate, kind="stable")
    strong, weak = scores[order, 0], scores[order, 1]
    n = len(order)
    gained = np.concatenate([[0.0], np.cumsum(strong - weak)])
    return np.arange(n + 1) / n, (weak.sum() + gained) / n


def summary(share: np.ndarray, quality: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    strong_q, weak_q = float(scores[:, 0].mean()), float(scores[:, 1].mean())
    return {
        "apgr": apgr(share, quality, weak_q, strong_q),
        "cpt50": cpt(share, quality, weak_q, strong_q, 0.5),
        "cpt80": cpt(share, quality, weak_q, strong_q, 0.8),
        "strong_accuracy": strong_q,
        "weak_accuracy": weak_q,
    }


def our_win_rates(bench: str, dev: np.ndarray) -> dict[str, np.ndarray]:
    """Predicted quality of GPT-4 minus Mixtral's on the dev rows, for each of our routers."""
    data = shared_outcomes(data_dir(bench))
    vectors = embed(data)
    strong, weak = data.experts.index(STRONG), data.experts.index(WEAK)
    texts = [data.texts[i] for i in dev]
    out: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (kind, hyper) in OURS.items():
            train(
                data,
                kind,
                Path(tmp) / kind,
                embedder(),
                options=TrainOptions(hyper=hyper_for(kind, **hyper)),
            )
            quality = load_model(Path(tmp) / kind).expert_quality(Queries(texts, vectors[dev]))
            out[name] = quality[:, strong] - quality[:, weak]
    return out


def _mean(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Key-wise mean of `summary` dicts (a CPT that some run never reaches is left out)."""
    out: dict[str, Any] = {}
    for key in runs[0]:
        values = [r[key] for r in runs if r[key] is not None]
        out[key] = float(np.mean(values)) if values else None
    return out


def score(folder: Path) -> None:
    ours = json.loads((RESULTS / "routellm.json").read_text())
    peer_meta = json.loads((folder / "peer.json").read_text())
    payload: dict[str, Any] = {"peer": peer_meta["peer"], "setting": __doc__.split("\n\n")[1]}
    for bench in BENCHES:
        scores = np.load(folder / f"{bench}_scores.npy")
        dev = np.array(json.loads((folder / f"{bench}_split.json").read_text())["dev"])
        per_seed = {
            str(seed): summary(
                *curve(np.load(folder / f"{bench}_peer_dev_winrate_seed{seed}.npy"), scores[dev]),
                scores[dev],
            )
            for seed in peer_meta["peer"]["seeds"]
        }
        peer = _mean(list(per_seed.values()))
        rng = np.random.default_rng(0)
        random = _mean(
            [summary(*curve(rng.random(len(dev)), scores[dev]), scores[dev]) for _ in range(200)]
        )
        mine = {
            name: summary(*curve(w, scores[dev]), scores[dev])
            for name, w in our_win_rates(bench, dev).items()
        }
        payload[bench] = {
            "dev_rows": len(dev),
            "routellm_mf_peer": {**peer, "per_seed": per_seed, **peer_meta[bench]},
            "random_order_mean_of_200": random,
            "ours": mine,
            "published_routellm": ours["published_routellm"][bench],
        }
        line = ", ".join(f"{n} {r['apgr']:.3f}" for n, r in payload[bench]["ours"].items())
        seeds = " / ".join(f"{r['apgr']:.3f}" for r in per_seed.values())
        print(f"{bench}: RouteLLM MF (peer) APGR {peer['apgr']:.3f} (seeds {seeds}); {line}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(payload, indent=1, default=float) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("step", choices=["export", "score"])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    export(args.folder) if args.step == "export" else score(args.folder)


if __name__ == "__main__":
    main()
