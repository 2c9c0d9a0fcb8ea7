"""Per-query latency of the exemplar routers (the embedded default's), against the embedding alone.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.routing.exemplar_latency   # ~20 s

The centroid and kNN routers over the built-in categories (gateway/defaults.yaml) and the two
default experts, with real MiniLM and no cache, on distinct queries (no cache hit anywhere).
The baseline, run in the same script on the same queries, is `embedder.embed([query])` alone:
the ratio says what routing adds to the one embedding every routed request pays. Writes
results/exemplar_latency.json. (It replaces two tests that printed these numbers.)
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

import yaml

from bench.routing.common import write_json
from registry.spec import ExpertSpec
from routers.base import ExpertTable
from routers.centroid import CentroidRouter
from routers.config import RouterConfig
from routers.embedder import SentenceTransformerEmbedder
from routers.knn import KnnRouter

QUERIES = 200
ROUNDS = 3


def _defaults() -> tuple[RouterConfig, ExpertTable]:
    text = resources.files("gateway").joinpath("defaults.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    experts = tuple(ExpertSpec.model_validate(e) for e in data["experts"])
    return RouterConfig.model_validate(data["router"]), ExpertTable(1, experts)


def _queries(config: RouterConfig) -> list[str]:
    """Distinct queries of the categories' own style: exemplars with a varying suffix."""
    exemplars = [e for texts in config.categories.values() for e in texts]
    return [f"{exemplars[i % len(exemplars)]} (case {i})" for i in range(QUERIES)]


def _median_ms(call: Callable[[str], object], texts: list[str]) -> float:
    samples = []
    for text in texts:
        start = time.perf_counter()
        call(text)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config, table = _defaults()
    embedder = SentenceTransformerEmbedder()
    embedder.load()
    routers = {"centroid": CentroidRouter(embedder, config), "knn": KnnRouter(embedder, config)}
    for router in routers.values():
        router.route("warm up", table)  # embeds the exemplars once
    results: dict[str, Any] = {
        "queries": QUERIES,
        "rounds": ROUNDS,
        "cpu_count": os.cpu_count(),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "(unset)"),
        "rounds_median_ms": [],
    }
    for round_ in range(ROUNDS):
        texts = [f"{q} r{round_}" for q in _queries(config)]
        row = {"embed_only": _median_ms(lambda t: embedder.embed([t]), texts)}
        for name, router in routers.items():
            row[name] = _median_ms(functools.partial(router.route, table=table), texts)
        results["rounds_median_ms"].append(row)
        print(f"round {round_}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in row.items()))
    rounds = results["rounds_median_ms"]
    results["ratio_to_embedding"] = {
        name: [r[name] / r["embed_only"] for r in rounds] for name in routers
    }
    print("route / embed:", results["ratio_to_embedding"])
    write_json("exemplar_latency", results)


if __name__ == "__main__":
    main()
