"""Routing over domain retrievers (RouterRetriever) on classic_ir: merged, routed, fused, oracle.

    cd /work/main && PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python -m bench.retrieval.routing

Writes results/routing.json and results/routing.png (`routing_report.py`). About 2-4 minutes on
2 CPUs once the document and query embeddings are in the `EmbeddingCache`
(~/.cache/coe-gateway/embeddings or $COE_EMBED_CACHE); a cold first run embeds the 7,095
documents first (~15 minutes more here).

Each of MED, CISI, CRAN and CACM (`bench.retrieval.classic_ir`, two data defects repaired) is
one domain retriever, indexed with `experts.retrieval.build_index` (dense, lexical, hybrid;
all-MiniLM-L6-v2). For every judged query (383) and index kind, nDCG@10 and recall@100
(`bench.retrieval.metrics`, trec_eval definitions, graded CRAN judgements) of:

(a) merged   one index over all four corpora (ids `<collection>:<id>`);
(b) routed   the top-1 domain of the gateway's router;
(c) fused    what the gateway retrieves (`gateway.retrieval`): its gate
             (`retrieval_decision`: the top domain's probability >= threshold), then, with the
             default `choose_by: similarity`, every domain searched and the one whose top k=5
             passages are most similar to the query used, with the next ones whose
             softmax(mean similarity / 0.05) is >= 0.2, at most 2 (`choose`), merged by
             similarity (`combine`); also measured with `choose_by: router` (the domains at
             router probability >= 0.2, weighted reciprocal-rank fusion), the rule before. The
             gate threshold is chosen on one half of the queries and applied to the other
             (2-fold, both ways), so every query is scored with a threshold chosen without it;
(d) oracle   the query's own collection.

The router is the gateway's: a `CentroidRouter` (default `RouterConfig`: temperature 0.05) over
an `ExpertTable` of retriever `ExpertSpec`s whose exemplars are their indexes' pilot texts
(`experts.retriever.with_pilots`), i.e. softmax over the cosine to each domain's mean pilot
text. Only the four retrievers are in the table (in a gateway, LLM experts' categories share
the softmax). Pilots: by default the documents nearest 8 k-means centroids of the corpus; also
(RouterRetriever style) sample queries: each collection's queries are split in two halves, one
half's texts are the pilots and only the other half's judged queries are evaluated, both ways.

Fifth domain: three domains' retrievers are routed over, then the fourth is added to the table
(a new registry revision, its pilots from its own documents only; nothing trained); routing
accuracy and nDCG@10 before / after, for the three domains' queries and the new one's, each of
the four taking the "added last" role.

Latency: per query, the router's decision (query embedding included) and the searches (the
query vector comes from the router's `CachedEmbedder`, as in the gateway), median and p95,
on a sample of the queries with the real embedder. The main measurement serves vectors from
the embedding cache instead, so it is deterministic and fast.

Macro averages (the mean of the four collections' means) are the headline: CRAN holds 225 of
the 383 judged queries and would dominate the micro average (the mean over all queries), which
is reported too.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench.retrieval.classic_ir import COLLECTIONS, collection_dir, repaired_corpus
from bench.retrieval.metrics import ndcg, recall, self_check
from bench.retrieval.routing_report import plot, summary, target
from experts.chat import ChatRequest, Message
from experts.retrieval import Index, IndexKind, Passage, build_index, load_corpus, load_index
from experts.retriever import with_pilots
from gateway.retrieval import choose, combine, retrieval_decision
from gateway.settings import RetrievalSettings
from registry.spec import ExpertKind, ExpertSpec
from routers.base import ExpertTable, RouteDecision
from routers.centroid import CentroidRouter
from routers.config import RouterConfig
from routers.embedder import CachedEmbedder, Embedder, SentenceTransformerEmbedder, Vectors
from routers.training.embed_cache import EmbeddingCache

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = (IndexKind.DENSE, IndexKind.LEXICAL, IndexKind.HYBRID)
DEPTH = 100
"""Results per search (recall@100; fused lists are cut back to 100)."""
MAX_DOMAINS = 2
THRESHOLDS = (0.0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
GATEWAY_THRESHOLD = 0.5
"""`retrieval.threshold` in gateway/defaults.yaml."""
SPLIT_SEED = 9
DEFAULT_PILOTS = 8
"""`build_index`'s default (`experts.retrieval.pilots.DEFAULT_PILOTS`)."""
SENSITIVITY_PILOTS = (8, 32)
SENSITIVITY_TEMPERATURES = (0.05, 0.1, 0.2)
LATENCY_WARMUP = 5
Rule = Literal["similarity", "router"]
RULE: Rule = "similarity"
"""The gateway's default `retrieval.choose_by`; (c) is also measured with `router`."""

Doc = tuple[str, str]
"""(collection, document id): a ranking entry; relevant only in the query's own collection."""
Key = tuple[str, str]
"""(collection, query id)."""


@dataclass(frozen=True)
class Query:
    collection: str
    id: str
    text: str
    judged: bool
    half: int
    """0 or 1: the 2-fold split (threshold choice; sample-query pilots)."""

    @property
    def key(self) -> Key:
        return (self.collection, self.id)


@dataclass
class Data:
    corpora: dict[str, Path]
    repairs: dict[str, list[str]]
    queries: list[Query]
    grades: dict[Key, dict[Doc, int]]

    def judged(self) -> list[Query]:
        return [q for q in self.queries if q.judged]


class PrecomputedEmbedder:
    """The embedder's vectors served from memory; texts not known are embedded through the
    on-disk `EmbeddingCache` (and remembered). Same id and dimension as `inner`."""

    def __init__(self, inner: Embedder, cache: EmbeddingCache) -> None:
        self._inner = inner
        self._cache = cache
        self._vectors: dict[str, Vectors] = {}
        self.misses = 0

    @property
    def id(self) -> str:
        return self._inner.id

    @property
    def dim(self) -> int:
        return self._inner.dim

    def preload(self, texts: Sequence[str]) -> None:
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            vectors = self._cache.embed(self._inner, missing, progress=len(missing) > 500)
            self._vectors.update(zip(missing, vectors, strict=True))

    def embed(self, texts: Sequence[str]) -> Vectors:
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        self.misses += len(missing)
        self.preload(missing)
        return np.stack([self._vectors[t] for t in texts]).astype(np.float32)


# ---------------------------------------------------------------------------------------- data


def load_data(work: Path) -> Data:
    corpora: dict[str, Path] = {}
    repairs: dict[str, list[str]] = {}
    queries: list[Query] = []
    grades: dict[Key, dict[Doc, int]] = {}
    rng = np.random.default_rng(SPLIT_SEED)
    for name in COLLECTIONS:
        corpora[name], repairs[name] = repaired_corpus(
            collection_dir(name) / "corpus.jsonl", work / "corpora"
        )
        lines = (collection_dir(name) / "queries.jsonl").read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
        order = rng.permutation(len(rows))
        half = np.empty(len(rows), dtype=int)
        half[order[: len(rows) // 2]], half[order[len(rows) // 2 :]] = 0, 1
        for row, h in zip(rows, half, strict=True):
            queries.append(
                Query(name, str(row["_id"]), row["text"], bool(row["has_qrels"]), int(h))
            )
        qrels = (collection_dir(name) / "qrels.tsv").read_text(encoding="utf-8").splitlines()
        for line in qrels[1:]:
            qid, doc, score = line.split("\t")
            grades.setdefault((name, qid), {})[(name, doc)] = int(score)
    for q in queries:
        if q.judged and not any(g > 0 for g in grades.get(q.key, {}).values()):
            raise ValueError(f"{q.key}: has_qrels but no positive judgement")
    return Data(corpora, repairs, queries, grades)


def merged_corpus(data: Data, out: Path) -> Path:
    """One JSONL of all four corpora, ids `<collection>:<id>`, the same title and text."""
    with out.open("w", encoding="utf-8") as f:
        for name, path in data.corpora.items():
            for d in load_corpus(path).documents:
                row = {"_id": f"{name}:{d.id}", "title": d.title, "text": d.text}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return out


def retriever_table(
    directories: Mapping[str, Path], names: Sequence[str], revision: int
) -> ExpertTable:
    """Retriever experts as the registry holds them, with their pilot texts as exemplars."""
    specs = tuple(
        with_pilots(
            ExpertSpec(
                name=name, kind=ExpertKind.RETRIEVER, options={"index": str(directories[name])}
            )
        )
        for name in names
    )
    return ExpertTable(revision=revision, experts=specs)


# ------------------------------------------------------------------------------------ measures


Ranking = list[Doc]


def scores(data: Data, rankings: Mapping[Key, Ranking], keys: Sequence[Key]) -> dict[str, Any]:
    """nDCG@10 and recall@100, macro (mean of collections' means) and micro, per collection."""
    per: dict[str, list[tuple[float, float]]] = {}
    for key in keys:
        ranking, grades = rankings[key], data.grades[key]
        per.setdefault(key[0], []).append((ndcg(ranking, grades, 10), recall(ranking, grades, 100)))
    by_coll = {
        c: {
            "queries": len(v),
            "ndcg@10": float(np.mean([x[0] for x in v])),
            "recall@100": float(np.mean([x[1] for x in v])),
        }
        for c, v in per.items()
    }
    every = [x for v in per.values() for x in v]
    return {
        "macro": {
            "ndcg@10": float(np.mean([r["ndcg@10"] for r in by_coll.values()])),
            "recall@100": float(np.mean([r["recall@100"] for r in by_coll.values()])),
        },
        "micro": {
            "ndcg@10": float(np.mean([x[0] for x in every])),
            "recall@100": float(np.mean([x[1] for x in every])),
        },
        "queries": len(every),
        "by_collection": by_coll,
    }


def macro_ndcg(data: Data, rankings: Mapping[Key, Ranking], keys: Sequence[Key]) -> float:
    return float(scores(data, rankings, keys)["macro"]["ndcg@10"])


def accuracy(routes: Mapping[Key, RouteDecision], keys: Sequence[Key]) -> dict[str, Any]:
    per: dict[str, list[bool]] = {}
    for key in keys:
        per.setdefault(key[0], []).append(routes[key].categories[0][0] == key[0])
    by_coll = {c: float(np.mean(v)) for c, v in per.items()}
    return {
        "macro": float(np.mean(list(by_coll.values()))),
        "micro": float(np.mean([x for v in per.values() for x in v])),
        "queries": sum(len(v) for v in per.values()),
        "by_collection": by_coll,
    }


def confusion(routes: Mapping[Key, RouteDecision], keys: Sequence[Key]) -> dict[str, Any]:
    """{true collection: {routed-to domain: queries}}."""
    out: dict[str, dict[str, int]] = {c: dict.fromkeys(COLLECTIONS, 0) for c in COLLECTIONS}
    for key in keys:
        out[key[0]][routes[key].categories[0][0]] += 1
    return out


# ------------------------------------------------------------------------------------- routing


def settings(threshold: float, rule: Rule = RULE) -> RetrievalSettings:
    """The gateway's defaults but the gate `threshold`, `max_retrievers` and `choose_by`."""
    return RetrievalSettings(threshold=threshold, max_retrievers=MAX_DOMAINS, choose_by=rule)


def gated(
    query: Query, route: RouteDecision, table: ExpertTable, threshold: float, rule: Rule = RULE
) -> tuple[tuple[str, float], ...]:
    """The gateway's retrieval decision: (domain, router probability) searched, best first."""
    request = ChatRequest((Message("user", query.text),))
    decision = retrieval_decision(request, route, table, table.names(), settings(threshold, rule))
    return decision.retrievers


def gateway_choice(
    query: Query,
    route: RouteDecision,
    table: ExpertTable,
    threshold: float,
    found: Mapping[str, list[Passage]],
    rule: Rule = RULE,
) -> tuple[Ranking, tuple[str, ...]]:
    """What the gateway retrieves (`gateway.retrieval`: gate, search, `choose`, `combine`), cut
    at DEPTH, and the domains it used, best first."""
    domains = gated(query, route, table, threshold, rule)
    rules = settings(threshold, rule)
    chosen, _ = choose([(n, w, found[n]) for n, w in domains], rules)
    cited = combine(chosen, DEPTH, rules)
    return [(c.retriever, c.passage.id) for c in cited], tuple(n for n, _, _ in chosen)


def fused_ranking(
    query: Query,
    route: RouteDecision,
    table: ExpertTable,
    threshold: float,
    found: Mapping[str, list[Passage]],
    rule: Rule = RULE,
) -> Ranking:
    return gateway_choice(query, route, table, threshold, found, rule)[0]


def top1(route: RouteDecision) -> str:
    return route.categories[0][0]


@dataclass
class KindRun:
    """One index kind: every judged query searched in every domain (top 100, text dropped),
    in the merged index, and routed over the four domains."""

    kind: IndexKind
    directories: dict[str, Path]
    indexes: dict[str, Index]
    merged: Index
    found: dict[Key, dict[str, list[Passage]]]
    merged_found: dict[Key, Ranking]
    table: ExpertTable
    routes: dict[Key, RouteDecision]


def run_kind(
    kind: IndexKind, data: Data, merged_path: Path, work: Path, embedder: PrecomputedEmbedder
) -> KindRun:
    started = time.perf_counter()
    directories = {c: work / kind.value / c for c in COLLECTIONS}
    for c in COLLECTIONS:
        build_index(data.corpora[c], directories[c], kind, embedder)
    build_index(merged_path, work / kind.value / "merged", kind, embedder)
    indexes = {c: load_index(directories[c], embedder) for c in COLLECTIONS}
    merged = load_index(work / kind.value / "merged", embedder)
    built = time.perf_counter()
    found: dict[Key, dict[str, list[Passage]]] = {}
    merged_found: dict[Key, Ranking] = {}
    for q in data.judged():
        found[q.key] = {
            c: [replace(p, text="", title="", metadata={}) for p in index.search(q.text, DEPTH)]
            for c, index in indexes.items()
        }
        merged_found[q.key] = [
            (p.id.split(":", 1)[0], p.id.split(":", 1)[1]) for p in merged.search(q.text, DEPTH)
        ]
    table = retriever_table(directories, COLLECTIONS, revision=1)
    router = CentroidRouter(embedder, RouterConfig())
    routes = {q.key: router.route(q.text, table) for q in data.judged()}
    print(
        f"{kind}: built in {built - started:.1f} s, searched and routed in "
        f"{time.perf_counter() - built:.1f} s",
        flush=True,
    )
    return KindRun(kind, directories, indexes, merged, found, merged_found, table, routes)


def choose_thresholds(
    data: Data,
    routes: Mapping[Key, RouteDecision],
    table: ExpertTable,
    found: Mapping[Key, Mapping[str, list[Passage]]],
    rule: Rule = RULE,
) -> tuple[dict[int, float], dict[str, Any], dict[Key, Ranking]]:
    """2-fold choice of the gate threshold: for each half, the threshold with the best macro
    nDCG@10 on the *other* half (ties: the higher threshold, fewer searches). Returns the
    threshold applied to each half, the per-threshold curves, and the fused rankings."""
    judged = data.judged()
    by_threshold: dict[float, dict[Key, Ranking]] = {}
    for t in THRESHOLDS:
        by_threshold[t] = {
            q.key: fused_ranking(q, routes[q.key], table, t, found[q.key], rule) for q in judged
        }
    curves: dict[str, Any] = {}
    chosen: dict[int, float] = {}
    for half in (0, 1):
        keys = [q.key for q in judged if q.half == half]
        curve = {t: macro_ndcg(data, by_threshold[t], keys) for t in THRESHOLDS}
        curves[f"half{half}"] = {str(t): round(v, 4) for t, v in curve.items()}
        best = max(curve.values())
        chosen[1 - half] = max(t for t, v in curve.items() if v == best)
    keys_all = [q.key for q in judged]
    curves["all"] = {
        str(t): round(macro_ndcg(data, by_threshold[t], keys_all), 4) for t in THRESHOLDS
    }
    fused = {q.key: by_threshold[chosen[q.half]][q.key] for q in judged}
    return chosen, curves, fused


def evaluate_kind(data: Data, run: KindRun) -> tuple[dict[str, Any], dict[int, float]]:
    judged = data.judged()
    keys = [q.key for q in judged]
    chosen, curves, fused = choose_thresholds(data, run.routes, run.table, run.found)
    routed = {k: _single(top1(run.routes[k]), run.found[k]) for k in keys}
    oracle = {k: _single(k[0], run.found[k]) for k in keys}
    gateway_default = {
        q.key: fused_ranking(q, run.routes[q.key], run.table, GATEWAY_THRESHOLD, run.found[q.key])
        for q in judged
    }
    choices = {
        q.key: gateway_choice(q, run.routes[q.key], run.table, chosen[q.half], run.found[q.key])[1]
        for q in judged
    }
    first = {k: _single(used[0], run.found[k]) for k, used in choices.items() if used}
    router_chosen, _, router_fused = choose_thresholds(
        data, run.routes, run.table, run.found, "router"
    )
    result = {
        "merged": scores(data, run.merged_found, keys),
        "routed": scores(data, routed, keys),
        "fused": scores(data, fused, keys),
        "oracle": scores(data, oracle, keys),
        "fused_rule": RULE,
        "fused_chosen_domain_only": scores(data, first, list(first)),
        "fused_chosen_domain_accuracy": _chosen_accuracy(choices),
        "fused_domains_used": {
            str(n): sum(len(u) == n for u in choices.values()) for n in range(MAX_DOMAINS + 1)
        },
        "fused_domains_searched": len(gated(judged[0], run.routes[keys[0]], run.table, 0.0)),
        "fused_at_gateway_default_threshold": scores(data, gateway_default, keys),
        "fused_thresholds": {f"half{h}": t for h, t in sorted(chosen.items())},
        "fused_curve_macro_ndcg@10": curves,
        "fused_router_rule": scores(data, router_fused, keys),
        "fused_router_rule_thresholds": {f"half{h}": t for h, t in sorted(router_chosen.items())},
        "routing_accuracy_document_pilots": accuracy(run.routes, keys),
        "routing_confusion": confusion(run.routes, keys),
        "pilot_texts": {s.name: len(s.exemplars) for s in run.table.experts},
    }
    return result, chosen


def _chosen_accuracy(choices: Mapping[Key, tuple[str, ...]]) -> dict[str, Any]:
    """How often the first domain the gateway used is the query's own (gated queries only)."""
    per: dict[str, list[bool]] = {}
    for key, used in choices.items():
        if used:
            per.setdefault(key[0], []).append(used[0] == key[0])
    by_coll = {c: float(np.mean(v)) for c, v in per.items()}
    return {
        "macro": float(np.mean(list(by_coll.values()))),
        "queries": sum(len(v) for v in per.values()),
        "by_collection": by_coll,
    }


def _single(domain: str, found: Mapping[str, list[Passage]]) -> Ranking:
    return [(domain, p.id) for p in found[domain]]


def sensitivity(
    data: Data, run: KindRun, work: Path, embedder: PrecomputedEmbedder
) -> dict[str, Any]:
    """Not the gateway's defaults: more k-means pilots per domain, and softer router
    probabilities (a higher temperature), which give the fusion's second domain weight. The
    threshold of (c) is chosen 2-fold as in the main measurement."""
    judged = data.judged()
    keys = [q.key for q in judged]
    out: dict[str, Any] = {}
    for pilots in SENSITIVITY_PILOTS:
        directories = run.directories
        if pilots != DEFAULT_PILOTS:
            directories = {c: work / f"{run.kind.value}-pilots{pilots}" / c for c in COLLECTIONS}
            for c in COLLECTIONS:
                build_index(data.corpora[c], directories[c], run.kind, embedder, pilots=pilots)
        table = retriever_table(directories, COLLECTIONS, revision=1)
        for temperature in SENSITIVITY_TEMPERATURES:
            router = CentroidRouter(embedder, RouterConfig(temperature=temperature))
            routes = {q.key: router.route(q.text, table) for q in judged}
            chosen, _, fused = choose_thresholds(data, routes, table, run.found)
            routed = {k: _single(top1(routes[k]), run.found[k]) for k in keys}
            out[f"pilots={pilots},temperature={temperature}"] = {
                "routing_accuracy": accuracy(routes, keys)["macro"],
                "routed_ndcg@10": macro_ndcg(data, routed, keys),
                "fused_ndcg@10": macro_ndcg(data, fused, keys),
                "fused_thresholds": {f"half{h}": t for h, t in sorted(chosen.items())},
            }
    return out


# -------------------------------------------------------------------------- sample-query pilots


def query_pilot_routing(
    data: Data,
    runs: Sequence[KindRun],
    chosen: Mapping[IndexKind, Mapping[int, float]],
    work: Path,
    embedder: PrecomputedEmbedder,
) -> dict[str, Any]:
    """Pilots = one half of each collection's queries (judged or not); evaluated: the other
    half's judged queries. The pilot texts do not depend on the index kind (lexical built)."""
    out: dict[str, Any] = {}
    for pilot_half in (0, 1):
        directories = {}
        for c in COLLECTIONS:
            texts = [q.text for q in data.queries if q.collection == c and q.half == pilot_half]
            directories[c] = work / f"query-pilots-{pilot_half}" / c
            build_index(
                data.corpora[c], directories[c], IndexKind.LEXICAL, embedder, sample_queries=texts
            )
        table = retriever_table(directories, COLLECTIONS, revision=1)
        router = CentroidRouter(embedder, RouterConfig())
        evaluated = [q for q in data.judged() if q.half != pilot_half]
        keys = [q.key for q in evaluated]
        routes = {q.key: router.route(q.text, table) for q in evaluated}
        split: dict[str, Any] = {
            "pilot_queries": {s.name: len(s.exemplars) for s in table.experts},
            "evaluated_queries": len(keys),
            "routing_accuracy": accuracy(routes, keys),
        }
        for run in runs:
            routed = {k: _single(top1(routes[k]), run.found[k]) for k in keys}
            threshold = chosen[run.kind][1 - pilot_half]
            fused = {
                q.key: fused_ranking(q, routes[q.key], table, threshold, run.found[q.key])
                for q in evaluated
            }
            doc_routed = {k: _single(top1(run.routes[k]), run.found[k]) for k in keys}
            split[run.kind.value] = {
                "routed_ndcg@10": macro_ndcg(data, routed, keys),
                "fused_ndcg@10": macro_ndcg(data, fused, keys),
                "fused_threshold": threshold,
                "document_pilots_routed_ndcg@10": macro_ndcg(data, doc_routed, keys),
                "oracle_ndcg@10": macro_ndcg(
                    data, {k: _single(k[0], run.found[k]) for k in keys}, keys
                ),
            }
        doc_acc = {run.kind.value: accuracy(run.routes, keys) for run in runs}
        split["document_pilots_routing_accuracy_same_queries"] = doc_acc
        out[f"pilots_half{pilot_half}_evaluated_half{1 - pilot_half}"] = split
    return out


# -------------------------------------------------------------------------------- fifth domain


def added_domain(
    data: Data, run: KindRun, chosen: Mapping[int, float], embedder: PrecomputedEmbedder
) -> dict[str, Any]:
    """Each collection in turn added last to a table of the other three (same router object,
    registry revision 1 -> 2; only the new pilot texts are embedded)."""
    judged = data.judged()
    out: dict[str, Any] = {}
    for new in COLLECTIONS:
        old = [c for c in COLLECTIONS if c != new]
        router = CentroidRouter(embedder, RouterConfig())
        before_table = retriever_table(run.directories, old, revision=1)
        before = {q.key: router.route(q.text, before_table) for q in judged}
        embedded_before = router.index_cache.embedded
        after_table = retriever_table(run.directories, [*old, new], revision=2)
        after = {q.key: router.route(q.text, after_table) for q in judged}
        row: dict[str, Any] = {
            "exemplars_embedded_when_added": router.index_cache.embedded - embedded_before
        }
        for group, members in (("original_domains", old), ("new_domain", [new])):
            keys = [q.key for q in judged if q.collection in members]
            qs = [q for q in judged if q.collection in members]
            entry: dict[str, Any] = {"queries": len(keys)}
            for label, routes, table in (
                ("before", before, before_table),
                ("after", after, after_table),
            ):
                routed = {k: _single(top1(routes[k]), run.found[k]) for k in keys}
                fused = {
                    q.key: fused_ranking(q, routes[q.key], table, chosen[q.half], run.found[q.key])
                    for q in qs
                }
                entry[label] = {
                    "routing_accuracy": accuracy(routes, keys)["macro"],
                    "routed_ndcg@10": macro_ndcg(data, routed, keys),
                    "fused_ndcg@10": macro_ndcg(data, fused, keys),
                }
            row[group] = entry
        out[f"{new}_added"] = row
    mean = {
        group: {
            label: {
                m: float(np.mean([out[f"{c}_added"][group][label][m] for c in COLLECTIONS]))
                for m in ("routing_accuracy", "routed_ndcg@10", "fused_ndcg@10")
            }
            for label in ("before", "after")
        }
        for group in ("original_domains", "new_domain")
    }
    return {"mean_over_rotations": mean, "rotations": out}


# ------------------------------------------------------------------------------------- latency


def latency(
    data: Data,
    runs: Sequence[KindRun],
    chosen: Mapping[IndexKind, Mapping[int, float]],
    per_collection: int,
) -> dict[str, Any]:
    """Real embedder: merged search (query embedded), then the router's decision (query
    embedded; a fresh `CachedEmbedder` per kind, shared with the domain indexes as in the
    gateway) and the routed / fused searches (the query vector is a cache hit)."""
    plain = SentenceTransformerEmbedder()
    plain.load()
    sample: list[Query] = []
    for c in COLLECTIONS:
        sample.extend([q for q in data.judged() if q.collection == c][:per_collection])
    out: dict[str, Any] = {
        "queries": len(sample),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    for run in runs:
        cached = CachedEmbedder(plain, 4096)
        router = CentroidRouter(cached, RouterConfig())
        indexes = {c: load_index(d, cached) for c, d in run.directories.items()}
        merged = load_index(run.merged.directory, plain)
        router.route("warm-up: build the exemplar index", run.table)
        for i in range(LATENCY_WARMUP):  # texts not in the sample: no cache hit later
            merged.search(f"warm-up query {i} about wing boundary layers", DEPTH)
            router.route(f"warm-up query {i} on library catalogues", run.table)
        samples: dict[str, list[float]] = {
            "merged_search": [],
            "routing": [],
            "routing_query_embedding": [],
            "routing_without_embedding": [],
            "routed_search": [],
            "fused_search": [],
        }
        for q in sample:
            t0 = time.perf_counter()
            merged.search(q.text, DEPTH)
            t1 = time.perf_counter()
            route = router.route(q.text, run.table)
            t2 = time.perf_counter()
            indexes[top1(route)].search(q.text, DEPTH)
            t3 = time.perf_counter()
            threshold = chosen[run.kind][q.half]
            domains = gated(q, route, run.table, threshold)
            searched = [(n, w, indexes[n].search(q.text, DEPTH)) for n, w in domains]
            rules = settings(threshold)
            combine(choose(searched, rules)[0], DEPTH, rules)
            t4 = time.perf_counter()
            for name, value in (
                ("merged_search", t1 - t0),
                ("routing", t2 - t1),
                ("routing_query_embedding", route.extra["embed_ms"] / 1000),
                ("routing_without_embedding", t2 - t1 - route.extra["embed_ms"] / 1000),
                ("routed_search", t3 - t2),
                ("fused_search", t4 - t3),
            ):
                samples[name].append(value * 1000)
        out[run.kind.value] = {name: _summary(values) for name, values in samples.items()}
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "routing.json")
    parser.add_argument("--latency-queries", type=int, default=25, help="per collection")
    args = parser.parse_args(argv)
    self_check()
    started = time.perf_counter()
    load_before = os.getloadavg()
    cache = EmbeddingCache()
    embedder = PrecomputedEmbedder(SentenceTransformerEmbedder(), cache)
    results: dict[str, Any] = {}
    chosen: dict[IndexKind, dict[int, float]] = {}
    with tempfile.TemporaryDirectory(prefix="routing-bench-") as tmp:
        work = Path(tmp)
        data = load_data(work)
        for path in data.corpora.values():
            embedder.preload([d.content for d in load_corpus(path).documents])
        embedder.preload([q.text for q in data.queries])
        merged_path = merged_corpus(data, work / "merged.jsonl")
        runs = []
        for kind in KINDS:
            run = run_kind(kind, data, merged_path, work, embedder)
            results[kind.value], chosen[kind] = evaluate_kind(data, run)
            runs.append(run)
        query_pilots = query_pilot_routing(data, runs, chosen, work, embedder)
        fifth = {
            run.kind.value: added_domain(data, run, chosen[run.kind], embedder) for run in runs
        }
        best_run = max(runs, key=lambda r: results[r.kind.value]["fused"]["macro"]["ndcg@10"])
        variants = {
            "kind": best_run.kind.value,
            "variants": sensitivity(data, best_run, work, embedder),
        }
        measured = time.perf_counter() - started
        timing = latency(data, runs, chosen, args.latency_queries)
    judged = data.judged()
    payload = {
        "command": "python -m bench.retrieval.routing",
        "embedder": embedder.id,
        "router": "CentroidRouter, RouterConfig() (temperature 0.05); exemplars: pilot texts",
        "headline": "macro average over the four collections",
        "metrics": "nDCG@10 (linear gain; CRAN graded), recall@100: bench/retrieval/metrics.py",
        "judged_queries": {c: sum(q.collection == c for q in judged) for c in COLLECTIONS},
        "thresholds_tried": THRESHOLDS,
        "max_domains": MAX_DOMAINS,
        "data_repairs": data.repairs,
        "results": results,
        "query_pilots": query_pilots,
        "fifth_domain": fifth,
        "sensitivity": variants,
        "latency": timing,
        "target": target(results),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "embedder_misses_during_measurement": embedder.misses,
        "seconds": {
            "measurement": round(measured, 1),
            "total": round(time.perf_counter() - started, 1),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    plot(payload, args.out.with_suffix(".png"))
    print(summary(payload))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
