"""Per-query routing latency on this machine (one query at a time, no batching, no cache).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.routing.latency   # ~5 min

With more than one BLAS thread, numpy's OpenBLAS threads and the embedder's thread pool spin
against each other on two cores: the embedding of the next query doubles (28 ms instead of
14 ms here) and a kNN's 1 x 7,700 matrix product takes 3 ms instead of 0.8 ms. Serve the
router with OPENBLAS_NUM_THREADS=1 (per-query inference gains nothing from BLAS threads).

Times `TrainedRouter.route` end to end (embedding + classifier/scorer + expert ordering) over 200
MMLU-Pro dev questions, with the sentence-transformers and the ONNX embedder, and the model part
alone on precomputed vectors. Writes results/latency.json.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.routing.common import data_dir, embed, embedder, write_json
from bench.shared_data import shared_outcomes
from registry.spec import ExpertKind, ExpertSpec
from routers.artifact import ArtifactFamily
from routers.base import ExpertTable
from routers.classifiers import Queries
from routers.embedder import Embedder, OnnxEmbedder
from routers.trained import TrainedRouter
from routers.trained_model import load_model
from routers.training import TrainOptions, hyper_for, train
from routers.training.datasets import train_dev_split

N = 200


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(ordered),
        "p95_ms": ordered[int(0.95 * (len(ordered) - 1))],
        "mean_ms": statistics.fmean(ordered),
    }


def time_router(router: TrainedRouter, texts: list[str], table: ExpertTable) -> dict[str, float]:
    router.route(texts[0], table)  # warm-up (loads the model)
    samples = []
    for text in texts:
        start = time.perf_counter()
        router.route(text, table)
        samples.append((time.perf_counter() - start) * 1000)
    return summary(samples)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data = shared_outcomes(data_dir("mmlu_pro"))
    vectors = embed(data)
    _, dev = train_dev_split(len(data), 0.2, 0, data.labels)
    rows = dev[:N]
    texts = [data.texts[i] for i in rows]
    table = ExpertTable(
        1,
        tuple(
            ExpertSpec(name=e, kind=ExpertKind.SIMULATOR, categories=["*"]) for e in data.experts
        ),
    )
    embedders: dict[str, Embedder] = {"sentence-transformers": embedder()}
    try:
        embedders["onnx"] = OnnxEmbedder()
    except (ImportError, FileNotFoundError) as exc:
        print("onnx embedder unavailable:", exc)
    results: dict[str, Any] = {
        "queries": N,
        "cpu_count": os.cpu_count(),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "(unset)"),
        "routers": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            "hybrid (MiniLM on the first 256 chars + TF-IDF)": (
                "hybrid",
                TrainOptions(embed_chars=256),
            ),
            "hybrid (MiniLM on the whole query + TF-IDF)": ("hybrid", TrainOptions()),
            "kNN classifier (k=15)": ("knn", TrainOptions(hyper=hyper_for("knn", k=15))),
            "per-expert heads, 27 experts": ("heads", TrainOptions(max_cost=30.0)),
        }
        for n, (label, (kind, opts)) in enumerate(runs.items()):
            path = Path(tmp) / f"r{n}"
            train(data, kind, path, embedders["sentence-transformers"], options=opts)
            model = load_model(path)
            samples = []
            for i in rows:
                start = time.perf_counter()
                one = Queries([data.texts[i]], vectors[i : i + 1])
                if model.family is ArtifactFamily.CLASSIFIER:
                    model.category_probs(one)
                else:
                    model.choose(one)
                samples.append((time.perf_counter() - start) * 1000)
            entry: dict[str, Any] = {"model_only": summary(samples)}
            for name, emb in embedders.items():
                entry[f"route_with_{name}"] = time_router(TrainedRouter(emb, path), texts, table)
            results["routers"][label] = entry
            print(label, {k: round(v["median_ms"], 2) for k, v in entry.items()})
    write_json("latency", results)


if __name__ == "__main__":
    main()
