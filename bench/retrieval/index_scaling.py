"""How big, how slow to build and how fast to query each index kind, on the classic_ir corpora.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.retrieval.index_scaling   # ~5-6 min, 2 CPUs

For each collection (MED, CISI, CRAN, CACM; see `bench.retrieval.classic_ir` for the two data
defects repaired) and each kind (dense, lexical, hybrid) with the real all-MiniLM-L6-v2
(`SentenceTransformerEmbedder`, CPU): documents, build seconds, index bytes on disk, and the
median / p95 milliseconds of `Index.search(query, k=10)` over the collection's first queries
(query embedding included, one query at a time).

Embedding dominates building, so each corpus is embedded once: the dense build runs first on
a cold cache, and the lexical (pilot sample) and hybrid builds reuse its vectors. Their
`build_seconds` adds back the measured embedding time of every vector they reused
(`reused_embedding_seconds`), so all three are what a cold `coe index build` would take here;
`wall_seconds` is what the run itself spent. Queries go through a fresh, uncached embedder.
The machine's load average is recorded: on a shared two-core box, other work slows the
embedder. Writes results/index_scaling.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.retrieval.classic_ir import COLLECTIONS, collection_dir, repaired_corpus
from experts.retrieval import IndexKind, build_index, load_index
from routers.embedder import Embedder, SentenceTransformerEmbedder, Vectors

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = (IndexKind.DENSE, IndexKind.LEXICAL, IndexKind.HYBRID)


class ReplayingEmbedder:
    """Embeds each text once; a repeat is served from memory and its measured cost (its share
    of the batch that embedded it) is added to `reused_seconds`."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner
        self._vectors: dict[str, tuple[Vectors, float]] = {}
        self.reused_seconds = 0.0

    @property
    def id(self) -> str:
        return self._inner.id

    @property
    def dim(self) -> int:
        return self._inner.dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            started = time.perf_counter()
            vectors = self._inner.embed(missing)
            each = (time.perf_counter() - started) / len(missing)
            for text, vector in zip(missing, vectors, strict=True):
                self._vectors[text] = (vector, each)
        wanted = set(texts) - set(missing)
        self.reused_seconds += sum(self._vectors[t][1] for t in wanted)
        return np.stack([self._vectors[t][0] for t in texts]).astype(np.float32)


def directory_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.iterdir() if path.is_file())


def query_times(directory: Path, embedder: Embedder, queries: list[str]) -> dict[str, float]:
    index = load_index(directory, embedder)
    index.search(queries[0], 10)  # warm-up
    samples = []
    for query in queries:
        started = time.perf_counter()
        index.search(query, 10)
        samples.append((time.perf_counter() - started) * 1000)
    ordered = sorted(samples)
    return {
        "median_query_ms": round(statistics.median(ordered), 2),
        "p95_query_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
    }


def bench_collection(
    name: str, work: Path, plain: Embedder, n_queries: int
) -> list[dict[str, Any]]:
    corpus, changes = repaired_corpus(collection_dir(name) / "corpus.jsonl", work / "corpora")
    queries_file = collection_dir(name) / "queries.jsonl"
    queries = [json.loads(line)["text"] for line in queries_file.open(encoding="utf-8")]
    replaying = ReplayingEmbedder(plain)
    rows = []
    for kind in KINDS:
        out = work / f"{name}-{kind}"
        replaying.reused_seconds = 0.0
        started = time.perf_counter()
        manifest = build_index(corpus, out, kind, replaying)
        wall = time.perf_counter() - started
        row = {
            "collection": name,
            "kind": kind.value,
            "docs": manifest.doc_count,
            "build_seconds": round(wall + replaying.reused_seconds, 2),
            "wall_seconds": round(wall, 2),
            "reused_embedding_seconds": round(replaying.reused_seconds, 2),
            "index_bytes": directory_bytes(out),
            "queries_timed": min(n_queries, len(queries)),
            **query_times(out, plain, queries[:n_queries]),
            "data_repairs": changes,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collections", default=",".join(COLLECTIONS))
    parser.add_argument("--queries", type=int, default=20, help="queries timed per index")
    parser.add_argument("--out", type=Path, default=RESULTS / "index_scaling.json")
    args = parser.parse_args(argv)
    plain = SentenceTransformerEmbedder()
    plain.load()
    load_before = os.getloadavg()
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="index-scaling-") as work:
        for name in args.collections.split(","):
            rows.extend(bench_collection(name, Path(work), plain, args.queries))
    payload = {
        "embedder": plain.id,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "search_k": 10,
        "total_seconds": round(time.perf_counter() - started, 1),
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
