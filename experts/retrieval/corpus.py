"""A domain corpus: one JSON object a line, read into `Document`s with errors naming file:line.

    {"_id": "12", "title": "Boundary layers", "text": "...", "year": 1962}

* `id` (or BEIR's `_id`): a string or an integer, unique in the file;
* `text`: a string, non-empty unless `title` is (CACM has titles without abstracts);
* `title`: optional string (default "");
* every other key is kept, as is, in `Document.metadata`.

Blank lines are skipped. `load_corpus` raises `CorpusError` for an unreadable file, a line that
is not a JSON object, a missing or non-string `text`, an empty text without a title, a missing,
empty or duplicate id, and a file without any document; the message starts with
`<file>:<line>:` (or `<file>:` when no line is at fault), as `routers.training.readers` does
for training data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Corpus", "CorpusError", "Document", "load_corpus"]

_RESERVED = frozenset({"id", "_id", "title", "text"})


class CorpusError(ValueError):
    """A corpus file that cannot be indexed; the message names the file (and line)."""


@dataclass(frozen=True)
class Document:
    """One passage of a corpus. `metadata` holds the record's other keys."""

    id: str
    text: str
    title: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def content(self) -> str:
        """What is indexed: the title (when there is one) then the text."""
        return "\n".join(part for part in (self.title, self.text) if part)


@dataclass(frozen=True)
class Corpus:
    """The documents of one corpus file, in file order, and the SHA-256 of the file's bytes."""

    path: Path
    documents: tuple[Document, ...]
    sha256: str

    def __len__(self) -> int:
        return len(self.documents)


def load_corpus(path: Path) -> Corpus:
    """Read and validate a corpus JSONL file (see the module docstring for the format)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CorpusError(f"{path}: {exc.strerror or exc}") from exc
    documents: list[Document] = []
    seen: dict[str, int] = {}
    for number, record in _records(path, raw):
        where = f"{path}:{number}"
        document = _document(record, where)
        if document.id in seen:
            raise CorpusError(
                f"{where}: duplicate id {document.id!r} (first on line {seen[document.id]})"
            )
        seen[document.id] = number
        documents.append(document)
    if not documents:
        raise CorpusError(f"{path}: empty corpus (no documents)")
    return Corpus(path=path, documents=tuple(documents), sha256=hashlib.sha256(raw).hexdigest())


def _records(path: Path, raw: bytes) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise CorpusError(f"{path}:{number}: not UTF-8 ({exc.reason})") from exc
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise CorpusError(f"{path}:{number}: expected a JSON object")
        yield number, record


def _document(record: dict[str, Any], where: str) -> Document:
    key = "id" if "id" in record else "_id"
    doc_id = record.get(key)
    if isinstance(doc_id, bool) or not isinstance(doc_id, str | int):
        raise CorpusError(f"{where}: missing 'id' (or '_id'): a string or an integer")
    doc_id = str(doc_id).strip()
    if not doc_id:
        raise CorpusError(f"{where}: empty {key!r}")
    text = record.get("text")
    if not isinstance(text, str):
        raise CorpusError(f"{where}: missing 'text' (a string)")
    title = record.get("title", "")
    if title is None:
        title = ""
    if not isinstance(title, str):
        raise CorpusError(f"{where}: 'title' must be a string")
    if not text.strip() and not title.strip():
        raise CorpusError(f"{where}: empty 'text' (and no 'title')")
    metadata = {k: v for k, v in record.items() if k not in _RESERVED}
    return Document(id=doc_id, text=text, title=title.strip(), metadata=metadata)
