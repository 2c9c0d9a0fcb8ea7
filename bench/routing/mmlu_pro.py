"""MMLU-Pro, 27 open-weights models: category classification and cost-aware expert routing.

    .venv/bin/python -m bench.routing.mmlu_pro          # ~10 min on 2 cores (embeddings cached)

Dev split: 20 % of the 9,624 questions, stratified by category, seed 0; every router is fitted
on the other 80 % (its operating point chosen on a 20 % validation part of those). Cost of a
query = active parameters (billions) of the model called (`model_params.csv`). A model with no
recorded output for a question (DeepSeek-Coder-V2 on 1,332 of them, nearly all chemistry and
engineering) has an unknown outcome there, not a wrong one: routers train on every outcome that
exists, and routing is scored on the dev questions every model answered (1,647 of 1,926).
Writes results/mmlu_pro.json and results/mmlu_pro.png.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.routing.common import (
    RESULTS,
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

BUDGET_B = 30.0
TARGET = 0.70


def classification(data: RoutingOutcomes, out: Path) -> dict[str, Any]:
    runs: dict[str, tuple[str, dict[str, Any]]] = {
        "MiniLM + logistic": ("logistic", {"c": 4.0}),
        "MiniLM + MLP": ("mlp", {"hidden": (256,)}),
        "MiniLM + kNN (k=15)": ("knn", {"k": 15}),
        "MiniLM + nearest centroid": ("centroid", {}),
        "MiniLM + word/char TF-IDF, logistic (hybrid)": ("hybrid", {"c": 8.0}),
        "hybrid, MiniLM on the first 256 characters only": ("hybrid", {"c": 8.0, "chars": 256}),
    }
    results: dict[str, Any] = {}
    for label, (kind, hyper) in runs.items():
        start = time.perf_counter()
        chars = int(hyper.pop("chars")) if "chars" in hyper else None
        options = TrainOptions(hyper=hyper_for(kind, **hyper), embed_chars=chars)
        result = train(data.labelled(), kind, out / f"{kind}-{chars}", embedder(), options=options)
        m = result.metrics
        results[label] = {
            k: m[k] for k in ("accuracy", "macro_f1", "ece", "ece_uncalibrated", "temperature")
        }
        results[label]["train_seconds"] = time.perf_counter() - start
        if kind == "hybrid":
            results[label]["confusion"] = m["confusion"]
            results[label]["labels"] = m["labels"]
        print(
            f"{label:48s} acc {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  ECE {m['ece']:.3f}"
        )
    return results


def routing(data: RoutingOutcomes, out: Path, tag: str) -> dict[str, Any]:
    runs = {
        "per-expert logistic heads": ("heads", {"l2": 1e-4}),
        "matrix factorisation (rank 16)": ("mf", {"rank": 16, "l2": 1e-4}),
        "kNN outcome scorer (k=100)": ("knn-scorer", {"k": 100, "tau": 0.1}),
        "CoE: hybrid classifier -> category x expert table": ("coe", {}),
    }
    results: dict[str, Any] = {}
    for label, (kind, hyper) in runs.items():
        opts = TrainOptions(max_cost=BUDGET_B, hyper=hyper_for(kind, **hyper))
        m = train(data, kind, out / f"{tag}-{kind}", embedder(), options=opts).metrics
        op = m["operating_point"]
        results[label] = {
            "dev_accuracy": op["quality"],
            "dev_avg_active_params_b": op["cost"],
            "aiq": m["aiq"],
            "apgr": m.get("apgr"),
            "cpt50_cost_b": m.get("cpt50_cost"),
            "cpt80_cost_b": m.get("cpt80_cost"),
            "max_dev_accuracy_any_cost": max(p["quality"] for p in m["curve"]),
            "usage": m["usage"],
            "curve": m["curve"],
        }
        results["baselines"] = m["baselines"]
        results["coe_map_true_category"] = m["coe_map_true_category"]
        print(
            f"[{tag}] {label:50s} dev acc {op['quality']:.4f} at {op['cost']:.1f}B"
            f"  (AIQ {m['aiq']:.4f})"
        )
    return results


def query_only_ceiling(data: RoutingOutcomes, out: Path) -> dict[str, Any]:
    """How far routing on the query alone can go here, measured on the scored dev rows with
    models *fitted on those very rows* (in-sample, so these are ceilings, not results):

    * the best category map and the best category x question-source map (MMLU-Pro's `src`:
      original MMLU, STEMEZ, TheoremQA, SciBench) within the budget;
    * per-expert logistic heads on MiniLM features fitted on the dev rows themselves.
    """
    _, dev = train_dev_split(len(data), 0.2, 0, data.labels)
    dev = np.intersect1d(dev, data.complete_rows())
    sub = data.subset(dev)
    assert sub.labels is not None
    folder = data_dir("mmlu_pro")
    source = {
        str(q["id"]): str(q["src"]).split("-")[0]
        for q in map(json.loads, (folder / "questions.jsonl").open())
    }
    costs = sub.costs[0]

    def best_map(keys: list[str]) -> dict[str, float]:
        groups = sorted(set(keys))
        lab = np.array(keys)
        table = np.array([sub.scores[lab == g].mean(axis=0) for g in groups])
        best = (0.0, 0.0)
        for w in np.linspace(0.0, 0.03, 301):
            pick = np.argmax(table - w * costs, axis=1)
            choice = pick[np.searchsorted(groups, lab)]
            q = float(sub.scores[np.arange(len(sub)), choice].mean())
            c = float(costs[choice].mean())
            if c <= BUDGET_B and q > best[0]:
                best = (q, c)
        return {"dev_accuracy": best[0], "avg_active_params_b": best[1], "groups": len(groups)}

    ceiling = in_sample_heads_ceiling(embed(data)[dev], sub.scores, costs, sub.costs, BUDGET_B)
    cats = list(sub.labels)
    return {
        "rows": len(dev),
        "category_map_in_sample": best_map(cats),
        "category_x_source_map_in_sample": best_map(
            [f"{c}|{source[i]}" for c, i in zip(cats, sub.ids, strict=True)]
        ),
        "heads_in_sample": {
            "dev_accuracy": ceiling["quality"],
            "avg_active_params_b": ceiling["cost"],
        },
        "oracle": {
            "dev_accuracy": float(sub.scores.max(axis=1).mean()),
        },
    }


def agreement_cascade(
    data: RoutingOutcomes,
    preds: dict[str, dict[str, str]],
    answers: dict[str, str],
    dev: np.ndarray,
) -> dict[str, Any]:
    """Call two models; keep their answer letter when they agree, else call a third and take
    its answer. The triple is the most accurate within the budget on the scored *train* rows;
    it is then scored on dev."""
    experts = list(data.experts)
    costs = data.costs[0]
    scored = data.complete_rows()
    train_rows = np.setdiff1d(scored, dev)

    def arrays(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        letters = np.array([[preds[data.ids[i]][f"{m}|pred"] for m in experts] for i in rows])
        gold = np.array([answers[data.ids[i]] for i in rows])
        return letters, letters == gold[:, None]

    def score(
        letters: np.ndarray, right: np.ndarray, a: int, b: int, c: int
    ) -> tuple[float, float]:
        agree = (letters[:, a] == letters[:, b]) & (letters[:, a] != "")
        acc = float(np.where(agree, right[:, a], right[:, c]).mean())
        return acc, float(costs[a] + costs[b] + (~agree).mean() * costs[c])

    letters, right = arrays(train_rows)
    best: tuple[float, tuple[int, int, int]] = (-1.0, (0, 0, 0))
    for a in range(len(experts)):
        for b in range(a + 1, len(experts)):
            for c in range(len(experts)):
                if c in (a, b) or costs[a] + costs[b] > BUDGET_B:
                    continue
                acc, cost = score(letters, right, a, b, c)
                if cost <= BUDGET_B and acc > best[0]:
                    best = (acc, (a, b, c))
    a, b, c = best[1]
    acc, cost = score(*arrays(dev), a, b, c)
    return {
        "models": [experts[a], experts[b]],
        "on_disagreement": experts[c],
        "train_accuracy": best[0],
        "dev_accuracy": acc,
        "avg_active_params_b": cost,
    }


def fixed_set_oracle(data: RoutingOutcomes, dev: np.ndarray, top: int = 5) -> list[dict[str, Any]]:
    """Call a fixed set of models on every query and keep a right answer whenever one of them
    has it (perfect answer selection): the best sets of 1-5 models within the budget, on the
    scored dev rows. Any policy that calls a fixed set and then picks or fuses their answers
    stays at or below this."""
    scores, costs = data.scores[dev], data.costs[0]
    found = []
    for r in range(1, 6):
        for combo in itertools.combinations(range(len(data.experts)), r):
            cols = list(combo)
            if costs[cols].sum() <= BUDGET_B:
                found.append((float(scores[:, cols].max(axis=1).mean()), cols))
    found.sort(key=lambda f: -f[0])
    return [
        {
            "models": [data.experts[i] for i in cols],
            "dev_accuracy": q,
            "avg_active_params_b": float(costs[cols].sum()),
        }
        for q, cols in found[:top]
    ]


def learned_answer_picker(
    data: RoutingOutcomes, preds: dict[str, dict[str, str]], dev: np.ndarray
) -> dict[str, Any]:
    """Call DeepSeek-Coder-V2 and Llama-3.1-8B-Instruct (29 B) on every query, the best pair
    of `fixed_set_oracle`; where their letters differ, a logistic regression fitted on the
    scored train rows (features: MiniLM embedding, one-hot category, log output lengths, empty
    answers) decides whether to take Llama's. Its threshold is picked on dev (optimistic)."""
    from sklearn.linear_model import LogisticRegression

    assert data.labels is not None
    a, b = "DeepSeek-Coder-V2", "Meta-Llama-3_1-8B-Instruct"
    ia, ib = data.experts.index(a), data.experts.index(b)
    letters = np.array([[preds[i][f"{m}|pred"] for m in (a, b)] for i in data.ids])
    chars = np.array([[float(preds[i][f"{m}|out_chars"] or 0) for m in (a, b)] for i in data.ids])
    cats = sorted(set(data.labels))
    onehot = np.eye(len(cats))[[cats.index(label) for label in data.labels]]
    features = np.hstack([embed(data), onehot, np.log1p(chars), letters == ""])
    differ = letters[:, 0] != letters[:, 1]
    train_rows = np.setdiff1d(data.complete_rows(), dev)
    fit = train_rows[differ[train_rows]]
    s = data.scores
    model = LogisticRegression(C=1.0, max_iter=2000)
    model.fit(features[fit], (s[fit, ib] > s[fit, ia]).astype(int))
    take_b = model.predict_proba(features[dev])[:, 1]
    best = max(
        (float(np.where(differ[dev] & (take_b > t), s[dev, ib], s[dev, ia]).mean()), float(t))
        for t in np.linspace(0.05, 0.95, 19)
    )
    return {
        "models": [a, b],
        "avg_active_params_b": float(data.costs[0, ia] + data.costs[0, ib]),
        "dev_accuracy": best[0],
        "threshold_picked_on_dev": best[1],
        "dev_accuracy_first_model_alone": float(s[dev, ia].mean()),
        "dev_accuracy_perfect_picker": float(np.maximum(s[dev, ia], s[dev, ib]).mean()),
        "train_rows_where_they_differ": len(fit),
    }


def answer_fusion_reference(data: RoutingOutcomes) -> dict[str, Any]:
    """Not routing: what calling several models and voting on their answer letters would give
    (upper reference for fusion; needs every called model's output)."""
    folder = data_dir("mmlu_pro")
    with (folder / "outcomes.csv").open(newline="") as f:
        preds = {r["id"]: r for r in csv.DictReader(f)}
    answers = {
        str(json.loads(line)["id"]): json.loads(line)["answer"]
        for line in (folder / "questions.jsonl").open()
    }
    _, dev = train_dev_split(len(data), 0.2, 0, data.labels)
    dev = np.intersect1d(dev, data.complete_rows())
    experts = list(data.experts)
    costs = dict(zip(experts, data.costs[0], strict=True))

    def vote(models: list[str]) -> float:
        right = 0
        for i in dev:
            row = preds[data.ids[i]]
            letters = [row[f"{m}|pred"] for m in models if row[f"{m}|pred"]]
            if letters:
                best = max(letters.count(x) for x in letters)
                winner = next(x for x in letters if letters.count(x) == best)
                right += winner == answers[data.ids[i]]
        return right / len(dev)

    combos = [
        ["Meta-Llama-3_1-70B-Instruct", "DeepSeek-Coder-V2", "Meta-Llama-3_1-70B"],
        ["DeepSeek-Coder-V2", "Meta-Llama-3_1-8B-Instruct", "Phi-3-mini-4k-instruct"],
        [
            "Meta-Llama-3_1-70B-Instruct",
            "DeepSeek-Coder-V2",
            "jamba-1.5-large",
            "Qwen1.5-110B",
            "Meta-Llama-3-70B",
        ],
    ]
    result: dict[str, Any] = {
        " + ".join(c): {
            "dev_accuracy": vote(c),
            "avg_active_params_b": float(sum(costs[m] for m in c)),
        }
        for c in combos
    }
    result["cascade"] = agreement_cascade(data, preds, answers, dev)
    result["fixed_set_oracle_within_budget"] = fixed_set_oracle(data, dev)
    result["learned_answer_picker"] = learned_answer_picker(data, preds, dev)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifacts", type=Path, default=None)
    parser.add_argument("--plot-only", action="store_true", help="redraw from results/*.json")
    args = parser.parse_args()
    if args.plot_only:
        plot(json.loads((RESULTS / "mmlu_pro.json").read_text()))
        return
    data = shared_outcomes(data_dir("mmlu_pro"))
    with tempfile.TemporaryDirectory() as tmp:
        out = args.artifacts or Path(tmp)
        payload: dict[str, Any] = {
            "dataset": "mmlu_pro (27 open-weights models; gemini excluded)",
            "split": "dev = 20 % stratified by category, seed 0 (1,926 questions); "
            "fit/val inside train",
            "budget_avg_active_params_b": BUDGET_B,
            "target_accuracy": TARGET,
            "classification": classification(data, out),
            "routing": routing(data, out, "all"),
            "query_only_ceiling": query_only_ceiling(data, out),
            "answer_fusion_reference": answer_fusion_reference(data),
        }
    write_json("mmlu_pro", payload)
    plot(payload)


def plot(payload: dict[str, Any]) -> None:
    routing_all = payload["routing"]
    curves = {
        k: v["curve"]
        for k, v in routing_all.items()
        if isinstance(v, dict) and "curve" in v and not k.startswith("coe_map")
    }
    curves["CoE map, true category (upper reference)"] = routing_all["coe_map_true_category"][
        "curve"
    ]
    plot_curves(
        "mmlu_pro",
        "MMLU-Pro dev: accuracy vs average active parameters per query (27 open models)",
        curves,
        routing_all["baselines"],
        xlabel="average active parameters per query (B)",
        budget=BUDGET_B,
        target=TARGET,
        logx=True,
    )


if __name__ == "__main__":
    main()
