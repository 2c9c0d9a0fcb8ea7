"""Pilot texts: the document nearest each pilot (or the sample queries), readable from the
manifest alone, for the exemplar router."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experts.retrieval import (
    IndexArtifactError,
    IndexKind,
    ReloadingRetriever,
    Retriever,
    build_index,
    load_corpus,
    load_index,
    read_pilot_texts,
)
from experts.retrieval.build import MAX_SAMPLE_QUERIES, PILOT_TEXT_CHARS, _shorten
from experts.retrieval.pilots import read_pilot_texts as read_pilot_texts_from_pilots
from routers.artifact import MANIFEST_FILE
from tests.fakes import HashingEmbedder
from tests.retrieval.conftest import SAMPLE

KINDS = list(IndexKind)


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("kind", KINDS)
def test_one_text_per_pilot_from_the_corpus(
    indexes: dict[IndexKind, Path], hashing: HashingEmbedder, kind: IndexKind
) -> None:
    index = load_index(indexes[kind], hashing)
    assert len(index.pilot_texts) == len(index.pilots) >= 1
    contents = [flat(d.content) for d in load_corpus(SAMPLE).documents]
    for text in index.pilot_texts:
        assert 0 < len(text) <= PILOT_TEXT_CHARS
        assert any(c.startswith(text) for c in contents), text
    assert read_pilot_texts(indexes[kind]) == index.pilot_texts
    assert read_pilot_texts_from_pilots is read_pilot_texts
    assert isinstance(index, Retriever)


def test_dense_pilot_texts_are_the_documents_nearest_the_pilots(
    indexes: dict[IndexKind, Path], hashing: HashingEmbedder
) -> None:
    index = load_index(indexes[IndexKind.DENSE], hashing)
    documents = load_corpus(SAMPLE).documents
    vectors = hashing.embed([d.content for d in documents])
    nearest = np.argmax(vectors @ index.pilots.T, axis=0)
    assert index.pilot_texts == tuple(_shorten(documents[int(i)].content) for i in nearest)


def test_read_pilot_texts_loads_neither_faiss_nor_bm25s(indexes: dict[IndexKind, Path]) -> None:
    code = (
        "import sys; from pathlib import Path\n"
        "from experts.retrieval import read_pilot_texts\n"
        f"texts = read_pilot_texts(Path({str(indexes[IndexKind.HYBRID])!r}))\n"
        "assert texts, texts\n"
        "loaded = [m for m in ('faiss', 'bm25s') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_read_pilot_texts_names_the_directory(tmp_path: Path) -> None:
    with pytest.raises(IndexArtifactError, match=f"^{tmp_path / 'none'}: no such index"):
        read_pilot_texts(tmp_path / "none")


def test_sample_queries_become_the_pilot_texts(tmp_path: Path, hashing: HashingEmbedder) -> None:
    queries = ["  blood   pressure\nin children ", "", "blood pressure in children", "wing flutter"]
    manifest = build_index(
        SAMPLE, tmp_path / "idx", IndexKind.LEXICAL, hashing, sample_queries=queries
    )
    assert manifest.pilot_texts == ("blood pressure in children", "wing flutter")
    assert manifest.params["pilot_text_source"] == "2 sample queries"
    assert read_pilot_texts(tmp_path / "idx") == manifest.pilot_texts
    index = load_index(tmp_path / "idx", hashing)
    assert index.pilot_texts == manifest.pilot_texts and len(index.pilots) >= 2
    on_disk = json.loads((tmp_path / "idx" / MANIFEST_FILE).read_text())
    assert on_disk["params"]["pilot_texts"] == list(manifest.pilot_texts)


def test_many_sample_queries_are_capped(tmp_path: Path, hashing: HashingEmbedder) -> None:
    queries = [f"query number {i}" for i in range(MAX_SAMPLE_QUERIES * 3)]
    manifest = build_index(
        SAMPLE, tmp_path / "idx", IndexKind.LEXICAL, hashing, sample_queries=queries
    )
    assert len(manifest.pilot_texts) == MAX_SAMPLE_QUERIES
    assert manifest.pilot_texts[0] == queries[0] and manifest.pilot_texts[-1] == queries[-1]


def test_blank_sample_queries_are_refused_before_writing(
    tmp_path: Path, hashing: HashingEmbedder
) -> None:
    with pytest.raises(ValueError, match="no non-blank query"):
        build_index(SAMPLE, tmp_path / "idx", IndexKind.LEXICAL, hashing, sample_queries=[" "])
    with pytest.raises(TypeError, match="not one string"):
        build_index(SAMPLE, tmp_path / "idx", IndexKind.LEXICAL, hashing, sample_queries="abc")
    assert not (tmp_path / "idx").exists()


def test_shorten_cuts_at_a_word_boundary() -> None:
    assert _shorten("a  b\n\nc") == "a b c"
    long = "word " * 100
    cut = _shorten(long)
    assert len(cut) <= PILOT_TEXT_CHARS and cut.endswith("word") and long.startswith(cut)
    assert _shorten("x" * 500) == "x" * PILOT_TEXT_CHARS


def test_reloading_retriever_is_a_retriever(
    indexes: dict[IndexKind, Path], hashing: HashingEmbedder
) -> None:
    retriever = ReloadingRetriever(indexes[IndexKind.HYBRID], hashing)
    assert isinstance(retriever, Retriever)
    assert retriever.pilot_texts == read_pilot_texts(indexes[IndexKind.HYBRID])
