"""`build_index`: a corpus file -> an index artifact directory, replaced only when complete.

Steps: read and validate the corpus (`CorpusError` naming file:line, before anything is
embedded or written), embed the documents (dense, hybrid) or a sample of them (lexical: for the
pilots only), score them with BM25 (lexical, hybrid), compute the pilots and their texts (the
document nearest each centroid, title and text cut to `PILOT_TEXT_CHARS`; or, when given,
`sample_queries`: a domain's example queries, as an exemplar router wants them), then write the
artifact into a temporary sibling directory, load it back with the same checks a server
applies, and only then move it into place. A build that fails at any step removes its
temporary directory and leaves `out_dir` as it was: a broken build never replaces a working
index. The swap is two renames (old away, new in) on the same filesystem; a reader in that
microsecond sees no index and keeps the one it already has.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from experts.retrieval.artifact import (
    FAMILY,
    IndexArtifactError,
    IndexKind,
    IndexManifest,
    save_index_artifact,
)
from experts.retrieval.corpus import Corpus, Document, load_corpus
from experts.retrieval.fusion import RRF_K
from experts.retrieval.index import HYBRID_DEPTH, load_index
from experts.retrieval.lexical import BM25_PARAMS, TOKENIZER, build_lexical
from experts.retrieval.passages import pack_passages
from experts.retrieval.pilots import DEFAULT_PILOTS, pilot_embeddings
from routers.artifact import MANIFEST_FILE
from routers.embedder import Embedder, Vectors

__all__ = ["EMBED_BATCH", "MAX_SAMPLE_QUERIES", "PILOT_SAMPLE", "PILOT_TEXT_CHARS", "build_index"]

EMBED_BATCH = 256
PILOT_SAMPLE = 256
"""A lexical index embeds at most this many documents (evenly spread) for its pilots."""
PILOT_TEXT_CHARS = 300
"""A pilot text is cut (at a word boundary when there is one) to at most this many characters."""
MAX_SAMPLE_QUERIES = 256
"""At most this many `sample_queries` (distinct, evenly spread) are kept as pilot texts."""


def build_index(
    corpus_path: Path,
    out_dir: Path,
    kind: IndexKind | str,
    embedder: Embedder,
    *,
    pilots: int = DEFAULT_PILOTS,
    sample_queries: Sequence[str] | None = None,
) -> IndexManifest:
    """Build a `kind` index of the corpus at `corpus_path` into `out_dir`; returns its manifest.

    The pilot texts (`IndexManifest.pilot_texts`) are the documents nearest the pilots, or the
    `sample_queries` when given (whitespace-normalised, distinct, at most `MAX_SAMPLE_QUERIES`).

    Raises `CorpusError` (bad corpus), `IndexArtifactError` (`out_dir` is something other than
    an index, or the written index does not load back), `ValueError` (unknown kind, embedder
    output of the wrong shape, `sample_queries` given but all blank); the embedder's own errors
    pass through. `out_dir` is untouched on any error.
    """
    kind = IndexKind(kind)
    queries = None if sample_queries is None else _sample_texts(sample_queries)
    corpus = load_corpus(corpus_path)
    _check_replaceable(out_dir)
    started = time.perf_counter()
    arrays, params, pilot_texts = _arrays(corpus, kind, embedder, pilots)
    if queries is not None:
        pilot_texts = queries
        params["pilot_text_source"] = f"{len(queries)} sample queries"
    build_seconds = time.perf_counter() - started
    manifest = IndexManifest.create(
        kind,
        embedder_id=embedder.id,
        data_hash=corpus.sha256,
        doc_count=len(corpus),
        pilot_texts=pilot_texts,
        params=params,
        metrics={"build_seconds": round(build_seconds, 3)},
    )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.building-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        written = save_index_artifact(staging, manifest, arrays)
        load_index(staging, embedder)  # the same checks a server applies, before the swap
        _swap_in(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written


def _arrays(
    corpus: Corpus, kind: IndexKind, embedder: Embedder, pilots: int
) -> tuple[dict[str, npt.NDArray[Any]], dict[str, Any], tuple[str, ...]]:
    documents = corpus.documents
    texts = [d.content for d in documents]
    arrays = pack_passages(documents)
    params: dict[str, Any] = {"corpus": str(corpus.path), "embedder_dim": embedder.dim}
    if kind is IndexKind.LEXICAL:
        rows = np.unique(np.linspace(0, len(texts) - 1, min(PILOT_SAMPLE, len(texts)), dtype=int))
        source = _embed(embedder, [texts[int(r)] for r in rows])
        params["pilot_source"] = f"{len(rows)} of {len(texts)} documents, evenly spread"
    else:
        rows = np.arange(len(texts))
        source = arrays["vectors"] = _embed(embedder, texts)
        params["pilot_source"] = f"all {len(texts)} documents"
    if kind is not IndexKind.DENSE:
        arrays.update(build_lexical(texts))
        params["tokenizer"] = TOKENIZER
        params["bm25"] = BM25_PARAMS
    if kind is IndexKind.HYBRID:
        params["fusion"] = {"method": "reciprocal_rank", "k": RRF_K, "depth": HYBRID_DEPTH}
    centroids, weights = pilot_embeddings(source, pilots)
    arrays["pilots"], arrays["pilot_weights"] = centroids, weights
    params["pilots"] = len(centroids)
    params["pilot_text_source"] = "the document nearest each pilot"
    nearest = _nearest(source, centroids)
    pilot_texts = tuple(_pilot_text(documents[int(rows[i])]) for i in nearest)
    return arrays, params, pilot_texts


def _nearest(vectors: Vectors, centroids: Vectors) -> list[int]:
    """For each centroid, the row of `vectors` with the highest cosine similarity to it."""
    norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return [int(i) for i in np.argmax((vectors / norms) @ centroids.T, axis=0)]


def _shorten(text: str, limit: int = PILOT_TEXT_CHARS) -> str:
    """Whitespace collapsed, cut to `limit` characters at a word boundary when there is one."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit + 1].rsplit(" ", 1)[0] if " " in text[: limit + 1] else ""
    return (cut or text[:limit]).rstrip()


def _pilot_text(document: Document) -> str:
    return _shorten(document.content)


def _sample_texts(queries: Sequence[str]) -> tuple[str, ...]:
    """Distinct, non-blank, shortened `queries`, at most `MAX_SAMPLE_QUERIES` evenly spread."""
    if isinstance(queries, str):
        raise TypeError("sample_queries must be a sequence of strings, not one string")
    texts = tuple(dict.fromkeys(t for t in (_shorten(q) for q in queries) if t))
    if not texts:
        raise ValueError("sample_queries: no non-blank query")
    if len(texts) > MAX_SAMPLE_QUERIES:
        picks = np.unique(np.linspace(0, len(texts) - 1, MAX_SAMPLE_QUERIES, dtype=int))
        texts = tuple(texts[int(i)] for i in picks)
    return texts


def _embed(embedder: Embedder, texts: Sequence[str]) -> Vectors:
    parts = [embedder.embed(texts[i : i + EMBED_BATCH]) for i in range(0, len(texts), EMBED_BATCH)]
    vectors = np.concatenate(parts).astype(np.float32, copy=False)
    if vectors.shape != (len(texts), embedder.dim) or not np.isfinite(vectors).all():
        raise ValueError(
            f"embedder {embedder.id!r} returned {vectors.shape} (or non-finite values) for "
            f"{len(texts)} texts of dimension {embedder.dim}"
        )
    return vectors


def _check_replaceable(out_dir: Path) -> None:
    """Refuse to replace anything but an index (or an empty directory): a typo in `--out`
    must not delete someone's folder."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise IndexArtifactError(f"{out_dir}: exists and is not a directory")
    if not any(out_dir.iterdir()):
        return
    if not (out_dir / MANIFEST_FILE).is_file():
        raise IndexArtifactError(f"{out_dir}: not empty and not an index; refusing to replace it")
    try:
        data = json.loads((out_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # an unreadable manifest: a corrupt index, which a rebuild is meant to replace
    kind = data.get("kind") if isinstance(data, dict) else None
    if not isinstance(kind, str) or not kind.startswith(f"{FAMILY}/"):
        raise IndexArtifactError(
            f"{out_dir}: holds a {kind!r} artifact, not an index; refusing to replace it"
        )


def _swap_in(staging: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    retired = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
    out_dir.rename(retired)
    try:
        staging.rename(out_dir)
    except OSError:
        retired.rename(out_dir)
        raise
    shutil.rmtree(retired, ignore_errors=True)
