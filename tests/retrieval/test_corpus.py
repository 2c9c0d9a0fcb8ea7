"""`load_corpus`: the accepted shapes of a record, and errors that name the file and line."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from experts.retrieval import CorpusError, load_corpus
from tests.retrieval.conftest import SAMPLE, write_lines


def test_reads_the_sample_with_metadata() -> None:
    corpus = load_corpus(SAMPLE)
    assert len(corpus) == 40
    first = corpus.documents[0]
    assert first.id == "med/664" and first.title == "" and first.text.startswith("the natural")
    assert dict(first.metadata) == {"domain": "med"}
    assert corpus.sha256 == hashlib.sha256(SAMPLE.read_bytes()).hexdigest()


def test_id_or_underscore_id_title_optional_and_blank_lines(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "c.jsonl",
        '{"id": 7, "text": "seven", "year": 1962}',
        "",
        '{"_id": "b", "title": "Only a title", "text": ""}',
        '{"id": "c", "title": null, "text": "no title"}',
    )
    docs = load_corpus(path).documents
    assert [d.id for d in docs] == ["7", "b", "c"]
    assert docs[0].metadata == {"year": 1962}
    assert docs[1].content == "Only a title"
    assert docs[2].title == ""


@pytest.mark.parametrize(
    ("lines", "where", "message"),
    [
        (['{"id": "a", "text": "x"}', "not json"], 2, "not JSON"),
        (['["a", "b"]'], 1, "expected a JSON object"),
        (['{"id": "a", "title": "t"}'], 1, "missing 'text'"),
        (['{"id": "a", "text": 3}'], 1, "missing 'text'"),
        (['{"id": "a", "text": "  "}'], 1, "empty 'text'"),
        (['{"text": "x"}'], 1, "missing 'id'"),
        (['{"id": true, "text": "x"}'], 1, "missing 'id'"),
        (['{"_id": " ", "text": "x"}'], 1, "empty '_id'"),
        (['{"id": "a", "text": "x", "title": 5}'], 1, "'title' must be a string"),
        (['{"id": "a", "text": "x"}', '{"id": "b", "text": "y"}', '{"id": "a", "text": "z"}'],
         3, "duplicate id 'a' (first on line 1)"),
    ],
)  # fmt: skip
def test_bad_lines_name_file_and_line(
    tmp_path: Path, lines: list[str], where: int, message: str
) -> None:
    path = write_lines(tmp_path / "bad.jsonl", *lines)
    with pytest.raises(CorpusError) as caught:
        load_corpus(path)
    assert str(caught.value).startswith(f"{path}:{where}: ")
    assert message in str(caught.value)


def test_empty_corpus_and_missing_file(tmp_path: Path) -> None:
    empty = write_lines(tmp_path / "empty.jsonl", "", "   ")
    with pytest.raises(CorpusError, match=r"empty\.jsonl: empty corpus"):
        load_corpus(empty)
    with pytest.raises(CorpusError, match=r"nope\.jsonl: No such file"):
        load_corpus(tmp_path / "nope.jsonl")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"id": "a", "text": "ok"}\n{"id": "b", "text": "caf\xe9"}\n')
    with pytest.raises(CorpusError, match=r"latin1\.jsonl:2: not UTF-8"):
        load_corpus(path)
