"""Build, load and search every index kind: one contract suite for the `Retriever` protocol,
plus what each kind promises (exact BM25, exact cosine, reciprocal-rank fusion, pilots)."""

from __future__ import annotations

import json
from pathlib import Path

import bm25s  # type: ignore[import-untyped]
import numpy as np
import pytest

from experts.retrieval import Index, IndexKind, Retriever, load_corpus, load_index
from experts.retrieval.fusion import reciprocal_rank_fusion
from experts.retrieval.lexical import BM25_PARAMS, LexicalIndex, tokenize
from experts.retrieval.pilots import pilot_embeddings
from routers.artifact import MANIFEST_FILE, WEIGHTS_FILE, ArtifactFamily, load_artifact
from routers.embedder import Embedder
from tests.fakes import HashingEmbedder
from tests.retrieval.conftest import SAMPLE

KINDS = list(IndexKind)


def open_index(indexes: dict[IndexKind, Path], kind: IndexKind, embedder: Embedder) -> Index:
    return load_index(indexes[kind], embedder)


@pytest.mark.parametrize("kind", KINDS)
def test_contract(
    indexes: dict[IndexKind, Path], hashing: HashingEmbedder, kind: IndexKind
) -> None:
    index = open_index(indexes, kind, hashing)
    assert isinstance(index, Retriever)
    assert len(index) == 40 and index.kind is kind and index.embedder_id == hashing.id
    passages = index.search("laminar boundary layer flow", k=5)
    assert 1 <= len(passages) <= 5
    scores = [p.score for p in passages]
    assert scores == sorted(scores, reverse=True)
    assert len({p.id for p in passages}) == len(passages)
    assert len(index.search("boundary layer flow and the library", k=500)) <= 40
    with pytest.raises(ValueError, match="k must be at least 1"):
        index.search("anything", k=0)


@pytest.mark.parametrize("kind", KINDS)
def test_the_obvious_document_ranks_first(
    indexes: dict[IndexKind, Path], hashing: HashingEmbedder, kind: IndexKind
) -> None:
    index = open_index(indexes, kind, hashing)
    top = index.search("Teaching with MARC Tapes: a computer based laboratory", k=3)[0]
    assert top.id == "cisi/857"
    assert top.title == "Teaching with MARC Tapes"
    assert top.text.startswith("A computer based laboratory for library science students")
    assert top.metadata == {"domain": "cisi"}


@pytest.mark.parametrize("kind", KINDS)
def test_manifest_records_what_was_built(
    indexes: dict[IndexKind, Path], hashing: HashingEmbedder, kind: IndexKind
) -> None:
    manifest = open_index(indexes, kind, hashing).manifest
    assert manifest.tag == f"index/{kind.value}"
    assert manifest.embedder_id == "hash-bow" and manifest.doc_count == 40
    assert manifest.data_hash == load_corpus(SAMPLE).sha256
    assert manifest.created and manifest.metrics["build_seconds"] >= 0
    assert manifest.params["embedder_dim"] == 256
    on_disk = json.loads((indexes[kind] / MANIFEST_FILE).read_text())
    assert on_disk["kind"] == manifest.tag and on_disk["params"]["doc_count"] == 40
    routers_manifest, _ = load_artifact(indexes[kind])  # a router artifact of the index family
    assert routers_manifest.family is ArtifactFamily.INDEX and routers_manifest.kind == kind.value
    with np.load(indexes[kind] / WEIGHTS_FILE, allow_pickle=False) as data:
        assert all(data[name].dtype.kind != "O" for name in data.files)
        assert ("vectors" in data.files) == (kind is not IndexKind.LEXICAL)
        assert ("bm25_data" in data.files) == (kind is not IndexKind.DENSE)


@pytest.mark.parametrize("kind", KINDS)
def test_pilots_are_unit_centroids(
    indexes: dict[IndexKind, Path], hashing: HashingEmbedder, kind: IndexKind
) -> None:
    index = open_index(indexes, kind, hashing)
    assert 1 <= len(index.pilots) <= 8 and index.pilots.shape[1] == 256
    np.testing.assert_allclose(np.linalg.norm(index.pilots, axis=1), 1.0, rtol=1e-5)
    assert index.pilot_weights.sum() == pytest.approx(1.0)


def test_dense_scores_are_cosines(indexes: dict[IndexKind, Path], hashing: HashingEmbedder) -> None:
    index = open_index(indexes, IndexKind.DENSE, hashing)
    document = load_corpus(SAMPLE).documents[17]
    top = index.search(document.content, k=2)
    assert top[0].id == document.id and top[0].score == pytest.approx(1.0, abs=1e-5)
    expected = float(hashing.embed([document.content])[0] @ hashing.embed(["x"])[0])
    by_id = {p.id: p.score for p in index.search("x", k=40)}
    assert by_id[document.id] == pytest.approx(expected, abs=1e-5)


def test_lexical_scores_match_bm25s(indexes: dict[IndexKind, Path]) -> None:
    documents = load_corpus(SAMPLE).documents
    reference = bm25s.BM25(**BM25_PARAMS)
    reference.index(tokenize([d.content for d in documents]), show_progress=False)
    index = load_index(indexes[IndexKind.LEXICAL])  # a lexical index needs no embedder
    query = "supersonic flow over cones and the boundary layer"
    expected = reference.get_scores(tokenize([query])[0])
    got = {p.id: p.score for p in index.search(query, k=40)}
    for row, document in enumerate(documents):
        assert got.get(document.id, 0.0) == pytest.approx(float(expected[row]), rel=1e-5)


def test_lexical_unknown_words_match_nothing(indexes: dict[IndexKind, Path]) -> None:
    assert load_index(indexes[IndexKind.LEXICAL]).search("zzyzx qwertyuiop", k=5) == []


def test_hybrid_fuses_both_rankings(
    indexes: dict[IndexKind, Path], hashing: HashingEmbedder
) -> None:
    query = "computer programs for libraries"
    dense = [p.id for p in open_index(indexes, IndexKind.DENSE, hashing).search(query, 40)]
    lexical = [p.id for p in load_index(indexes[IndexKind.LEXICAL]).search(query, 40)]
    hybrid = open_index(indexes, IndexKind.HYBRID, hashing).search(query, 10)
    ids = {doc: n for n, doc in enumerate(dict.fromkeys(dense + lexical))}
    fused = reciprocal_rank_fusion([[ids[d] for d in dense], [ids[d] for d in lexical]])
    by_number = {n: doc for doc, n in ids.items()}
    assert [p.id for p in hybrid] == [by_number[n] for n, _ in fused[:10]]
    assert [p.score for p in hybrid] == pytest.approx([s for _, s in fused[:10]])


def test_passages_carry_their_cosine_to_the_query(
    indexes: dict[IndexKind, Path], hashing: HashingEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`similarity`: the cosine for dense and hybrid (also a passage only BM25 found), None for
    lexical; what the gateway compares across domains."""
    query = "computer programs for libraries"
    cosine = {
        p.id: p.score for p in open_index(indexes, IndexKind.DENSE, hashing).search(query, 40)
    }
    dense = open_index(indexes, IndexKind.DENSE, hashing).search(query, 5)
    assert [p.similarity for p in dense] == [p.score for p in dense]
    monkeypatch.setattr("experts.retrieval.index.HYBRID_DEPTH", 3)  # each side's top 3 only
    hybrid = open_index(indexes, IndexKind.HYBRID, hashing).search(query, 6)
    dense_top3 = [p.id for p in dense[:3]]
    assert any(p.id not in dense_top3 for p in hybrid)  # found by the lexical side alone
    for p in hybrid:
        assert p.similarity == pytest.approx(cosine[p.id], abs=1e-5), p.id
    lexical = load_index(indexes[IndexKind.LEXICAL]).search(query, 5)
    assert lexical and all(p.similarity is None for p in lexical)


def test_reciprocal_rank_fusion() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1]], k=60)
    assert [item for item, _ in fused] == [1, 3, 2]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    assert reciprocal_rank_fusion([[5, 6], [6, 5]])[0][0] == 5  # ties: first seen wins


def test_pilots_separate_two_clusters() -> None:
    rng = np.random.default_rng(1)
    a = np.array([1.0, 0.0, 0.0]) + 0.05 * rng.standard_normal((30, 3))
    b = np.array([0.0, 1.0, 0.0]) + 0.05 * rng.standard_normal((10, 3))
    centroids, weights = pilot_embeddings(np.vstack([a, b]).astype(np.float32), count=2)
    order = np.argsort(-weights)
    assert weights[order] == pytest.approx([0.75, 0.25])
    assert centroids[order[0]] @ np.array([1.0, 0, 0]) > 0.99
    assert centroids[order[1]] @ np.array([0, 1.0, 0]) > 0.99
    mean, one = pilot_embeddings(np.vstack([a, b]).astype(np.float32), count=1)
    assert mean.shape == (1, 3) and one.tolist() == [1.0]
    with pytest.raises(ValueError, match="at least 1"):
        pilot_embeddings(a.astype(np.float32), count=0)


def test_lexical_arrays_are_checked() -> None:
    with pytest.raises(ValueError, match="missing lexical arrays"):
        LexicalIndex({}, doc_count=3)


def test_real_embedder_finds_a_paraphrase(tmp_path: Path, real_embedder: Embedder) -> None:
    from experts.retrieval import build_index

    for kind in (IndexKind.DENSE, IndexKind.HYBRID):
        build_index(SAMPLE, tmp_path / kind.value, kind, real_embedder)
        index = load_index(tmp_path / kind.value, real_embedder)
        top = index.search("how families can help children who have autism", k=3)
        assert top[0].id == "med/809", [p.id for p in top]
