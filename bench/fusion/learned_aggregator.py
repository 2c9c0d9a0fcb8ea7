"""A learned aggregator for output-level fusion on MMLU-Pro (27 open models, cost = billions of
active parameters summed over the experts called per query).

Run (about 5 minutes on 2 cores; embeddings come from the on-disk cache):

    cd /work/main && PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python \\
        bench/fusion/learned_aggregator.py [--artifact DIR]

`--artifact DIR` reuses a heads scorer trained by `train(data, "heads", DIR, embedder)` with the
default split; without it one is trained from scratch into a temporary directory.

Method
------
Scorer: per-expert logistic heads (`train(..., "heads")`) fitted on the *fit* rows predict
q[i, j] = P(expert j is right on query i). Ranking: utility = q - w x mean cost (as the gateway).

Aggregator: for a called set of experts, every distinct (normalised) answer held by a called
expert is a candidate; a logistic regression scores "this candidate is the right answer" from

    agreement      count / sum q / sum logit q / max q of its holders, the same for the called
                   experts answering otherwise, its share of the called quality, whether the
                   best-ranked expert holds it, whether it wins the quality-weighted tally
    who holds it   per expert: holds it, holds it x logit q, answered otherwise

and the argmax is answered. It is fitted on the fit rows with out-of-fold q (5-fold cross-fitted
heads, so q is out-of-sample as it is on val and dev), over the prefixes (k = 1..7) of the
utility ranking at several cost weights. Its regularisation is chosen on the val rows.

Set selection (two families, parameters chosen on the val rows within each budget):

    adaptive   top-k of the utility ranking, k from the softmax mass (as the gateway's vote)
    cascade    call the top k0 ranked experts, then the next ranked one while the aggregator's
               probability for its chosen answer is below tau, at most `cap` experts

Protocol: the dev rows (20 %, stratified by category, seed 0) are never used for fitting or
choosing; each budget's configuration is chosen on val and scored once on dev. References at the
same budgets, chosen the same way: top-1 routing (`FusionPolicy(NONE, cost_weight=w, k=1)`) and
the gateway's quality-weighted adaptive vote (`search_adaptive`). Ceilings: the oracle over all
27 experts, the best single expert, and a perfect picker over the very sets each policy calls.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.preprocessing import StandardScaler

from bench.routing.common import embedder
from bench.shared_data import shared_outcomes
from routers.classifiers import Queries
from routers.probability import softmax
from routers.selection import adaptive_top_k
from routers.trained_model import TrainedModel, load_model
from routers.training import train
from routers.training.datasets import RoutingOutcomes
from routers.training.embed_cache import EmbeddingCache
from routers.training.fit_scorers import HeadsHyper
from routers.training.fusion_eval import (
    FusionPolicy,
    Logged,
    PolicyKind,
    answer_ids,
    apply_policy,
    search_adaptive,
)
from routers.training.operating import cost_weight_grid
from routers.training.splits import SplitSpec, scorable, split_rows

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1].parent / "shared" / "data" / "mmlu_pro"
OUT = HERE / "results" / "learned_aggregator.json"
BUDGETS = (60.0, 75.0, 90.0, 105.0, 120.0, 135.0, 150.0)
MAX_K = 7
FOLDS = 5
TARGET = 0.70
TRAIN_WEIGHT_POINTS = 8
"""Cost weights (spread over the relevant part of the grid) whose rankings train the aggregator."""
TAUS = np.concatenate([np.linspace(0.30, 0.98, 35), [1.01]])
MASSES = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
TEMPERATURES = (0.02, 0.05, 0.1, 0.2)
CAPS = (2, 3, 4, 5, 7)


@dataclass(frozen=True)
class Split:
    """One set of rows with what the aggregator sees (q) and what is scored."""

    quality: Floats
    answers: Ints
    scores: Floats
    costs: Floats
    gold: Ints
    """The answer id scored correct (-1: no expert answered right)."""

    def logged(self, expert_costs: Floats) -> Logged:
        return Logged(self.quality, expert_costs, self.scores, self.costs, self.answers)


def gold_ids(answers: Ints, scores: Floats) -> Ints:
    right = (scores >= 1.0) & (answers >= 0)
    first = np.argmax(right, axis=1)
    got = answers[np.arange(len(answers)), first]
    return np.where(right.any(axis=1), got, -1).astype(np.int64)


def ranking(quality: Floats, expert_costs: Floats, weight: float) -> tuple[Ints, Floats]:
    """Experts per query best utility first (cheaper on ties) and the sorted utilities."""
    utility = quality - weight * expert_costs[None, :]
    order = np.lexsort((np.broadcast_to(expert_costs, utility.shape), -utility), axis=1)
    return order.astype(np.int64), np.take_along_axis(utility, order, axis=1)


def features(split: Split, order: Ints, k: int, n_answers: int) -> tuple[Floats, Bools]:
    """(n, n_answers, F) features of every candidate answer of the top-k called, and which
    candidates exist (held by at least one called expert)."""
    n, m = split.quality.shape
    rows = np.arange(n)
    called = np.zeros((n, m), dtype=bool)
    called[rows[:, None], order[:, :k]] = True
    q = split.quality
    lq = np.log(np.clip(q, 1e-4, 1 - 1e-4) / np.clip(1 - q, 1e-4, 1))
    letters = np.arange(n_answers)
    holds = (split.answers[:, None, :] == letters[None, :, None]) & called[:, None, :]
    answered = called & (split.answers >= 0)
    against = answered[:, None, :] & ~holds
    qb, lqb = q[:, None, :], lq[:, None, :]
    count = holds.sum(-1)
    sum_q = (holds * qb).sum(-1)
    sum_lq = (holds * lqb).sum(-1)
    max_q = np.where(holds, qb, 0.0).max(-1)
    n_against = against.sum(-1)
    sum_q_against = (against * qb).sum(-1)
    sum_lq_against = (against * lqb).sum(-1)
    max_q_against = np.where(against, qb, 0.0).max(-1)
    share = sum_q / np.maximum(sum_q + sum_q_against, 1e-9)
    first = order[:, 0]
    top_holds = split.answers[rows, first][:, None] == letters[None, :]
    tally = np.where(count > 0, sum_q, -1.0)
    winner = tally >= tally.max(axis=1, keepdims=True) - 1e-12
    best_rank = np.full((n, n_answers), float(k))
    for position in range(k):
        expert = order[:, position]
        held = split.answers[rows, expert][:, None] == letters[None, :]
        best_rank = np.where(held & (best_rank > position), position, best_rank)
    agg = np.stack(
        [
            count,
            sum_q,
            sum_lq,
            max_q,
            n_against,
            sum_q_against,
            sum_lq_against,
            max_q_against,
            share,
            top_holds,
            winner,
            best_rank / max(k, 1),
            np.full((n, n_answers), float(k)),
            count / k,
        ],
        axis=-1,
    ).astype(np.float64)
    per_expert = np.concatenate([holds, holds * lqb, against], axis=-1).astype(np.float64)
    return np.concatenate([agg, per_expert], axis=-1), count > 0


class Aggregator:
    """Logistic regression on candidate-answer features; picks the argmax candidate."""

    def __init__(self, c: float, n_answers: int) -> None:
        self.c = c
        self.n_answers = n_answers
        self.scaler = StandardScaler()
        self.model = LogisticRegression(C=c, max_iter=2000)

    def fit(self, x: Floats, y: Bools) -> Aggregator:
        self.model.fit(self.scaler.fit_transform(x), y)
        return self

    def proba(self, x: Floats, valid: Bools) -> Floats:
        n, a, f = x.shape
        p = self.model.predict_proba(self.scaler.transform(x.reshape(-1, f)))[:, 1]
        return np.where(valid, p.reshape(n, a), -1.0)


def training_table(
    split: Split, expert_costs: Floats, weights: Sequence[float], n_answers: int
) -> tuple[Floats, Bools]:
    xs, ys = [], []
    for w in weights:
        order, _ = ranking(split.quality, expert_costs, w)
        for k in range(1, MAX_K + 1):
            x, valid = features(split, order, k, n_answers)
            y = np.arange(n_answers)[None, :] == split.gold[:, None]
            xs.append(x[valid])
            ys.append(y[valid])
    return np.concatenate(xs), np.concatenate(ys)


@dataclass(frozen=True)
class Table:
    """Per cost weight and k (prefix of the ranking): the aggregator's pick, its probability,
    whether it is right, the cost paid, whether any called expert is right, the utilities."""

    prob: Floats  # (K, n)
    right: Floats  # (K, n)
    cost: Floats  # (K, n)
    oracle: Floats  # (K, n)
    utility: Floats  # (n, m)


def prefix_table(
    split: Split, expert_costs: Floats, weight: float, agg: Aggregator, n_answers: int
) -> Table:
    order, utility = ranking(split.quality, expert_costs, weight)
    n = len(order)
    rows = np.arange(n)
    prob = np.zeros((MAX_K, n))
    right = np.zeros((MAX_K, n))
    oracle = np.zeros((MAX_K, n))
    paid = np.cumsum(np.take_along_axis(split.costs, order[:, :MAX_K], axis=1), axis=1).T
    ranked_scores = np.take_along_axis(split.scores, order[:, :MAX_K], axis=1)
    for k in range(1, MAX_K + 1):
        x, valid = features(split, order, k, n_answers)
        p = agg.proba(x, valid)
        pick = np.argmax(p, axis=1)
        none = ~valid.any(axis=1)
        prob[k - 1] = np.where(none, 0.0, p[rows, pick])
        top_right = ranked_scores[:, 0] >= 1.0
        right[k - 1] = np.where(none, top_right, pick == split.gold)
        oracle[k - 1] = ranked_scores[:, :k].max(axis=1)
    return Table(prob, right, paid, oracle, utility)


def cascade_k(table: Table, k0: int, cap: int, tau: float) -> Ints:
    stop = table.prob[k0 - 1 : cap] >= tau
    first = np.argmax(stop, axis=0)
    return np.where(stop.any(axis=0), first + k0, cap).astype(np.int64)


def adaptive_k(table: Table, mass: float, temperature: float, cap: int) -> Ints:
    probs = softmax(table.utility / temperature)
    return adaptive_top_k(probs, mass, max_k=cap)


def outcome(table: Table, k: Ints) -> dict[str, float]:
    cols = np.arange(len(k))
    return {
        "accuracy": float(table.right[k - 1, cols].mean()),
        "avg_cost": float(table.cost[k - 1, cols].mean()),
        "avg_experts": float(k.mean()),
        "picker_ceiling": float(table.oracle[k - 1, cols].mean()),
    }


def configurations() -> list[dict[str, Any]]:
    configs: list[dict[str, Any]] = []
    for cap in CAPS:
        for k0 in (1, 2):
            if k0 <= cap:
                configs += [{"family": "cascade", "k0": k0, "cap": cap, "tau": t} for t in TAUS]
        for mass in MASSES:
            for t in TEMPERATURES:
                configs.append({"family": "adaptive", "mass": mass, "temperature": t, "cap": cap})
    return configs


def choose_k(table: Table, config: dict[str, Any]) -> Ints:
    if config["family"] == "cascade":
        return cascade_k(table, int(config["k0"]), int(config["cap"]), float(config["tau"]))
    return adaptive_k(
        table, float(config["mass"]), float(config["temperature"]), int(config["cap"])
    )


def heads_model(data: RoutingOutcomes, artifact: Path | None) -> TrainedModel:
    if artifact is not None:
        return load_model(artifact)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "heads"
        train(data, "heads", out, embedder())
        return load_model(out)


def out_of_fold(vectors: Floats, scores: Floats, hyper: HeadsHyper) -> Floats:
    predicted = np.zeros(scores.shape)
    folds = KFold(FOLDS, shuffle=True, random_state=0)
    for fit, held in folds.split(vectors):
        scorer = hyper.fit(vectors[fit].astype(np.float32), scores[fit])
        predicted[held] = scorer.predict(vectors[held])
    return predicted


def split_of(data: RoutingOutcomes, rows: Ints, quality: Floats, ids: Ints) -> Split:
    scores = data.filled_scores()[rows]
    return Split(quality, ids[rows], scores, data.costs[rows], gold_ids(ids[rows], scores))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--artifact", type=Path, default=None, help="trained heads artifact")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    start = time.time()

    data = shared_outcomes(DATA)
    spec = SplitSpec()
    rows = split_rows(data, spec)
    vectors = np.asarray(EmbeddingCache().embed(embedder(), list(data.texts)), dtype=np.float64)
    model = heads_model(data, args.artifact)
    assert model.expert_costs is not None
    expert_costs = np.asarray(model.expert_costs, dtype=np.float64)
    hyper = HeadsHyper(**model.manifest.params["hyper"])
    ids = answer_ids(data.answers if data.answers is not None else np.array([]))
    n_answers = int(ids.max()) + 1

    fit_rows = rows.fit
    fit_q = out_of_fold(vectors[fit_rows], data.scores[fit_rows], hyper)
    keep = np.isin(fit_rows, data.complete_rows())
    fit = split_of(data, fit_rows[keep], fit_q[keep], ids)
    val_rows, dev_rows = scorable(data, rows.val, "val"), scorable(data, rows.dev, "dev")

    def predicted(r: Ints) -> Floats:
        return model.expert_quality(Queries([data.texts[i] for i in r], vectors[r]))

    val = split_of(data, val_rows, predicted(val_rows), ids)
    dev = split_of(data, dev_rows, predicted(dev_rows), ids)
    print(f"scorer + cross-fitting: {time.time() - start:.0f}s")

    grid = cost_weight_grid(expert_costs, 40)
    relevant = grid[(grid == 0) | ((grid > 1e-5) & (grid < 3e-2))]
    train_weights = relevant[np.linspace(0, len(relevant) - 1, TRAIN_WEIGHT_POINTS).astype(int)]
    x, y = training_table(fit, expert_costs, train_weights.tolist(), n_answers)
    print(f"aggregator table {x.shape}: {time.time() - start:.0f}s")

    # regularisation: the val accuracy of the pick over the same kind of called sets
    best_c, best_acc, agg = 0.0, -1.0, None
    c_scores = {}
    for c in (0.01, 0.1, 1.0):
        candidate = Aggregator(c, n_answers).fit(x, y)
        accs = [
            prefix_table(val, expert_costs, float(w), candidate, n_answers).right.mean()
            for w in train_weights
        ]
        c_scores[c] = float(np.mean(accs))
        if c_scores[c] > best_acc:
            best_c, best_acc, agg = c, c_scores[c], candidate
    assert agg is not None
    print(f"aggregator C={best_c} (val pick accuracy by C: {c_scores}): {time.time() - start:.0f}s")

    # the information ceiling of answer aggregation: the same aggregator fed every expert
    all_k = len(data.experts)
    orders = {
        name: ranking(sp.quality, expert_costs, 0.0)[0]
        for name, sp in (("fit", fit), ("val", val), ("dev", dev))
    }
    x_all, valid_all = features(fit, orders["fit"], all_k, n_answers)
    y_all = np.arange(n_answers)[None, :] == fit.gold[:, None]
    agg_all = Aggregator(best_c, n_answers).fit(x_all[valid_all], y_all[valid_all])
    all_experts: dict[str, float] = {"avg_cost": float(dev.costs.sum(axis=1).mean())}
    for name, sp in (("val", val), ("dev", dev)):
        p_all = agg_all.proba(*features(sp, orders[name], all_k, n_answers))
        all_experts[f"{name}_accuracy"] = float((p_all.argmax(axis=1) == sp.gold).mean())
    print(f"aggregator over all {all_k} experts: {all_experts}: {time.time() - start:.0f}s")

    weights = [float(w) for w in relevant]
    val_tables = {w: prefix_table(val, expert_costs, w, agg, n_answers) for w in weights}
    dev_tables = {w: prefix_table(dev, expert_costs, w, agg, n_answers) for w in weights}
    configs = configurations()
    val_outcomes = [
        (w, config, outcome(val_tables[w], choose_k(val_tables[w], config)))
        for w in weights
        for config in configs
    ]
    print(f"{len(val_outcomes)} configurations on val: {time.time() - start:.0f}s")

    val_logged, dev_logged = val.logged(expert_costs), dev.logged(expert_costs)
    results: list[dict[str, Any]] = []
    for budget in BUDGETS:
        within = [v for v in val_outcomes if v[2]["avg_cost"] <= budget]
        w, config, on_val = max(within, key=lambda v: (v[2]["accuracy"], -v[2]["avg_cost"]))
        on_dev = outcome(dev_tables[w], choose_k(dev_tables[w], config))
        top1 = [FusionPolicy(PolicyKind.NONE, cost_weight=float(g), k=1) for g in grid]
        top1_val = [(p, apply_policy(val_logged, p)) for p in top1]
        top1_best = max(
            (t for t in top1_val if t[1].avg_cost <= budget),
            key=lambda t: (t[1].accuracy, -t[1].avg_cost),
        )
        vote_policy, vote_val = search_adaptive(
            val_logged, max_cost=budget, cost_weights=grid.tolist()
        )
        vote_dev = apply_policy(dev_logged, vote_policy)
        # the learned aggregator on exactly the sets the gateway's vote calls
        same_sets: dict[str, float] = {}
        if vote_policy.kind is PolicyKind.VOTE and vote_policy.mass > 0:
            table = prefix_table(dev, expert_costs, vote_policy.cost_weight, agg, n_answers)
            config_same = {
                "family": "adaptive",
                "mass": vote_policy.mass,
                "temperature": vote_policy.temperature,
                "cap": min(vote_policy.k, MAX_K),
            }
            same_sets = outcome(table, choose_k(table, config_same))
        results.append(
            {
                "budget": budget,
                "learned": {
                    "cost_weight": w,
                    "config": {k: v if isinstance(v, str) else float(v) for k, v in config.items()},
                    "val": on_val,
                    "dev": on_dev,
                },
                "top1": {
                    "cost_weight": top1_best[0].cost_weight,
                    "val": top1_best[1].to_json(),
                    "dev": apply_policy(dev_logged, top1_best[0]).to_json(),
                },
                "vote": {
                    "policy": vote_policy.describe(),
                    "cost_weight": vote_policy.cost_weight,
                    "val": vote_val.to_json(),
                    "dev": vote_dev.to_json(),
                },
                "learned_on_vote_sets_dev": same_sets,
            }
        )

    dev_scores = dev.scores
    best_single = int(np.argmax(dev_scores.mean(axis=0)))
    ceilings = {
        "oracle_all_27_dev": float(dev_scores.max(axis=1).mean()),
        "oracle_all_27_cost": float(dev.costs.sum(axis=1).mean()),
        "best_single_dev": float(dev_scores[:, best_single].mean()),
        "best_single_expert": data.experts[best_single],
        "best_single_cost": float(dev.costs[:, best_single].mean()),
        "perfect_picker_over_called_sets": "per budget: learned.dev.picker_ceiling",
        "learned_aggregator_over_all_27": all_experts,
    }
    reached = [r["budget"] for r in results if r["learned"]["dev"]["accuracy"] >= TARGET]
    payload = {
        "method": __doc__,
        "data": str(DATA.name),
        "split": {
            **spec.to_json(),
            "fit_rows": len(rows.fit),
            "fit_rows_scorable": len(fit.gold),
            "val_rows_scored": len(val_rows),
            "dev_rows_scored": len(dev_rows),
        },
        "aggregator": {
            "C": best_c,
            "val_pick_accuracy_by_C": c_scores,
            "training_candidates": len(y),
            "features": int(x.shape[1]),
            "train_cost_weights": train_weights.tolist(),
        },
        "target": {"accuracy": TARGET, "max_cost": max(BUDGETS), "reached_at_budgets": reached},
        "budgets": results,
        "ceilings": ceilings,
        "seconds": round(time.time() - start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")

    print(
        f"\n{'budget':>6} | {'learned (dev)':>21} | {'top-1 (dev)':>15} | {'vote (dev)':>15}"
        f" | {'learned@vote sets':>17} | picker ceiling | learned val"
    )
    for r in results:
        ld, td, vd = r["learned"]["dev"], r["top1"]["dev"], r["vote"]["dev"]
        same = r["learned_on_vote_sets_dev"]
        same_text = f"{same['accuracy']:.4f} @{same['avg_cost']:6.1f}" if same else "-"
        print(
            f"{r['budget']:6.0f} | {ld['accuracy']:.4f} @{ld['avg_cost']:6.1f} "
            f"k {ld['avg_experts']:.2f} | {td['accuracy']:.4f} @{td['avg_cost']:6.1f} | "
            f"{vd['accuracy']:.4f} @{vd['avg_cost']:6.1f} | {same_text:>17} | "
            f"{ld['picker_ceiling']:14.4f} | {r['learned']['val']['accuracy']:.4f}"
        )
    print(
        f"oracle {ceilings['oracle_all_27_dev']:.4f}; best single {ceilings['best_single_dev']:.4f}"
        f"; target {TARGET} reached at budgets {reached}; wrote {args.out} "
        f"({time.time() - start:.0f}s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
