"""`ReloadingRetriever` follows rebuilds of its directory and keeps a working index when a
rebuilt one does not load."""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import pytest

from experts.retrieval import IndexArtifactError, IndexKind, ReloadingRetriever, build_index
from routers.artifact import MANIFEST_FILE
from tests.fakes import HashingEmbedder
from tests.retrieval.conftest import SAMPLE, write_lines


@pytest.fixture
def directory(indexes: dict[IndexKind, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(indexes[IndexKind.LEXICAL], tmp_path / "idx"))


@pytest.fixture
def smaller(tmp_path: Path) -> Path:
    return write_lines(
        tmp_path / "small.jsonl",
        '{"id": "a", "text": "blood pressure in children"}',
        '{"id": "b", "text": "wing flutter at supersonic speed"}',
    )


def test_a_rebuild_is_picked_up(directory: Path, smaller: Path, hashing: HashingEmbedder) -> None:
    retriever = ReloadingRetriever(directory, hashing, interval_s=0)
    before = retriever.index
    assert len(before) == 40
    build_index(smaller, directory, IndexKind.HYBRID, hashing)
    assert len(retriever.index) == 2 and retriever.index.kind is IndexKind.HYBRID
    assert [p.id for p in retriever.search("wing flutter", k=1)] == ["b"]
    assert retriever.index is retriever.index  # no reload without a change


def test_checks_at_most_every_interval(
    directory: Path, smaller: Path, hashing: HashingEmbedder
) -> None:
    retriever = ReloadingRetriever(directory, hashing, interval_s=3600)
    build_index(smaller, directory, IndexKind.LEXICAL, hashing)
    assert len(retriever.index) == 40  # not checked yet
    assert retriever.reload() is True
    assert len(retriever.index) == 2
    assert retriever.reload() is False


def test_a_broken_rebuild_keeps_the_current_index(
    directory: Path, hashing: HashingEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    retriever = ReloadingRetriever(directory, hashing, interval_s=0)
    current = retriever.index
    good = (directory / MANIFEST_FILE).read_text()
    (directory / MANIFEST_FILE).write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="experts.retrieval.reloading"):
        assert retriever.index is current
        assert retriever.index is current  # the broken manifest is not re-read every check
        assert retriever.search("boundary layer", k=3)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(directory) in warnings[0].getMessage()
    (directory / MANIFEST_FILE).write_text(good + "\n")  # fixed: loaded again
    assert retriever.index is not current and len(retriever.index) == 40


def test_a_vanished_index_keeps_the_current_one(directory: Path, hashing: HashingEmbedder) -> None:
    retriever = ReloadingRetriever(directory, hashing, interval_s=0)
    current = retriever.index
    shutil.rmtree(directory)
    assert retriever.index is current
    assert retriever.search("boundary layer", k=1)


def test_another_embedder_is_not_swapped_in(
    directory: Path, smaller: Path, hashing: HashingEmbedder
) -> None:
    retriever = ReloadingRetriever(directory, hashing, interval_s=0)
    build_index(smaller, directory, IndexKind.DENSE, HashingEmbedder(dim=256, id="other"))
    assert len(retriever.index) == 40


def test_refuses_an_unusable_index_at_start(tmp_path: Path, hashing: HashingEmbedder) -> None:
    with pytest.raises(IndexArtifactError, match=f"^{tmp_path / 'none'}: no such index"):
        ReloadingRetriever(tmp_path / "none", hashing)
    with pytest.raises(ValueError, match="interval_s"):
        ReloadingRetriever(tmp_path / "none", hashing, interval_s=-1)


def test_searches_during_rebuilds(directory: Path, smaller: Path, hashing: HashingEmbedder) -> None:
    retriever = ReloadingRetriever(directory, hashing, interval_s=0)
    errors: list[BaseException] = []
    stop = threading.Event()

    def search() -> None:
        while not stop.is_set():
            try:
                assert len(retriever.search("boundary layer wing", k=2)) <= 2
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=search) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for corpus in (smaller, SAMPLE, smaller):
            build_index(corpus, directory, IndexKind.LEXICAL, hashing)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not errors, errors
    assert len(retriever.index) == 2
