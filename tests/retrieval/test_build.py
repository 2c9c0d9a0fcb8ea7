"""`build_index` replaces an index only with a complete, verified one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from experts.retrieval import (
    CorpusError,
    IndexArtifactError,
    IndexKind,
    build_index,
    load_index,
    read_index_manifest,
)
from routers.artifact import MANIFEST_FILE, WEIGHTS_FILE
from routers.embedder import Vectors
from tests.fakes import HashingEmbedder
from tests.retrieval.conftest import SAMPLE, write_lines


class BreakingEmbedder(HashingEmbedder):
    """Fails on its `fail_at`-th call, as a model running out of memory would."""

    def __init__(self, fail_at: int) -> None:
        super().__init__(dim=256)
        self.fail_at = fail_at

    def embed(self, texts: Sequence[str]) -> Vectors:
        if self.calls + 1 >= self.fail_at:
            raise RuntimeError("embedder died")
        return super().embed(texts)


@pytest.fixture
def working(tmp_path: Path, hashing: HashingEmbedder) -> Path:
    out = tmp_path / "idx"
    build_index(SAMPLE, out, IndexKind.HYBRID, hashing)
    return out


def assert_still_serves(out: Path, hashing: HashingEmbedder, before: bytes) -> None:
    assert (out / WEIGHTS_FILE).read_bytes() == before
    assert load_index(out, hashing).search("MARC tapes", k=1)[0].id == "cisi/857"
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no staging left behind


def test_a_failed_build_leaves_the_index_intact(working: Path, hashing: HashingEmbedder) -> None:
    before = (working / WEIGHTS_FILE).read_bytes()
    with pytest.raises(RuntimeError, match="embedder died"):
        build_index(SAMPLE, working, IndexKind.DENSE, BreakingEmbedder(fail_at=1))
    assert_still_serves(working, hashing, before)


def test_a_bad_corpus_leaves_the_index_intact(
    working: Path, hashing: HashingEmbedder, tmp_path: Path
) -> None:
    before = (working / WEIGHTS_FILE).read_bytes()
    bad = write_lines(tmp_path.parent / "bad.jsonl", '{"id": "a", "text": "x"}', "{oops")
    with pytest.raises(CorpusError, match=r"bad\.jsonl:2: not JSON"):
        build_index(bad, working, IndexKind.LEXICAL, hashing)
    assert_still_serves(working, hashing, before)


class WrongDimEmbedder(HashingEmbedder):
    """Declares 128 dimensions, returns 256."""

    @property
    def dim(self) -> int:
        return 128


def test_an_embedder_of_the_wrong_shape_is_caught(working: Path, hashing: HashingEmbedder) -> None:
    before = (working / WEIGHTS_FILE).read_bytes()
    with pytest.raises(ValueError, match=r"returned \(40, 256\)"):
        build_index(SAMPLE, working, IndexKind.DENSE, WrongDimEmbedder(dim=256))
    assert_still_serves(working, hashing, before)


class FickleEmbedder(HashingEmbedder):
    """Changes its id after the manifest is written: the written index then fails the load
    check that runs before the swap."""

    def __init__(self) -> None:
        super().__init__(dim=256)
        self.reads = 0

    @property
    def id(self) -> str:
        self.reads += 1
        return "hash-bow" if self.reads == 1 else "hash-bow-v2"


def test_a_written_index_that_fails_to_load_is_not_swapped_in(
    working: Path, hashing: HashingEmbedder
) -> None:
    before = (working / WEIGHTS_FILE).read_bytes()
    with pytest.raises(IndexArtifactError, match=r"\.building-.*built with the embedder"):
        build_index(SAMPLE, working, IndexKind.HYBRID, FickleEmbedder())
    assert_still_serves(working, hashing, before)


def test_a_rebuild_replaces_the_index(
    working: Path, hashing: HashingEmbedder, tmp_path: Path
) -> None:
    smaller = write_lines(
        tmp_path / "small.jsonl",
        '{"id": "x", "text": "wind tunnel tests of delta wings"}',
        '{"id": "y", "text": "library catalogues on punched cards"}',
    )
    manifest = build_index(smaller, working, IndexKind.LEXICAL, hashing)
    assert read_index_manifest(working) == manifest
    assert manifest.doc_count == 2 and manifest.params["pilots"] == 2
    assert load_index(working).search("delta wings", k=5)[0].id == "x"
    assert sorted(p.name for p in working.parent.iterdir()) == ["idx", "small.jsonl"]


def test_a_corrupt_index_can_be_rebuilt(working: Path, hashing: HashingEmbedder) -> None:
    (working / MANIFEST_FILE).write_text("{garbage")
    build_index(SAMPLE, working, IndexKind.DENSE, hashing)
    assert load_index(working, hashing).kind is IndexKind.DENSE


def test_refuses_to_replace_what_is_not_an_index(tmp_path: Path, hashing: HashingEmbedder) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(IndexArtifactError, match="not empty and not an index"):
        build_index(SAMPLE, folder, IndexKind.LEXICAL, hashing)
    assert (folder / "cat.jpg").exists()
    router = tmp_path / "router"
    router.mkdir()
    (router / MANIFEST_FILE).write_text('{"kind": "classifier/logistic"}')
    with pytest.raises(IndexArtifactError, match="'classifier/logistic' artifact"):
        build_index(SAMPLE, router, IndexKind.LEXICAL, hashing)
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(IndexArtifactError, match="not a directory"):
        build_index(SAMPLE, afile, IndexKind.LEXICAL, hashing)
    empty = tmp_path / "empty"
    empty.mkdir()
    build_index(SAMPLE, empty, IndexKind.LEXICAL, hashing)
    assert len(load_index(empty)) == 40


def test_unknown_kind(tmp_path: Path, hashing: HashingEmbedder) -> None:
    with pytest.raises(ValueError, match="'sparse' is not a valid IndexKind"):
        build_index(SAMPLE, tmp_path / "x", "sparse", hashing)
