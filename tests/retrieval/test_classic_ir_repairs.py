"""`bench.retrieval.classic_ir.repaired_corpus`: the two defects of the shared files, fixed
in a copy and reported; a valid file is used as is."""

from __future__ import annotations

from pathlib import Path

from bench.retrieval.classic_ir import repaired_corpus
from experts.retrieval import load_corpus
from tests.retrieval.conftest import SAMPLE, write_lines


def test_valid_corpus_is_used_as_is(tmp_path: Path) -> None:
    assert repaired_corpus(SAMPLE, tmp_path) == (SAMPLE, [])
    assert not any(tmp_path.iterdir())


def test_empty_documents_dropped_repeated_ids_renamed(tmp_path: Path) -> None:
    (tmp_path / "cacm").mkdir()
    source = write_lines(
        tmp_path / "cacm" / "corpus.jsonl",
        '{"_id": "1", "title": "A", "text": ""}',
        '{"_id": "2", "title": "", "text": " "}',
        '{"_id": "1", "title": "B", "text": "b"}',
    )
    path, changes = repaired_corpus(source, tmp_path / "out")
    assert changes == [
        "line 2: id '2' is empty, dropped",
        "line 3: repeated id '1' renamed '1-line3'",
    ]
    assert [d.id for d in load_corpus(path).documents] == ["1", "1-line3"]
