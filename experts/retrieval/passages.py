"""The passages of an index (ids, titles, texts, metadata) as packed string arrays.

Kept inside the index's `weights.npz`, so the one SHA-256 of the manifest covers them and a
search returns the text it matched without going back to the corpus file. Metadata is each
document's extra keys as a JSON object string.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy.typing as npt

from experts.retrieval.base import Passage
from experts.retrieval.corpus import Document
from experts.retrieval.strings import StringTable, pack

__all__ = ["PassageTable", "pack_passages"]

_FIELDS = ("id", "title", "text", "metadata")


def pack_passages(documents: Sequence[Document]) -> dict[str, npt.NDArray[Any]]:
    """`passage_<field>_bytes` / `passage_<field>_ends` arrays for every field."""
    columns = {
        "id": [d.id for d in documents],
        "title": [d.title for d in documents],
        "text": [d.text for d in documents],
        "metadata": [json.dumps(dict(d.metadata), ensure_ascii=False) for d in documents],
    }
    arrays: dict[str, npt.NDArray[Any]] = {}
    for name, values in columns.items():
        arrays[f"passage_{name}_bytes"], arrays[f"passage_{name}_ends"] = pack(values)
    return arrays


class PassageTable:
    """Row -> `Passage`, over the arrays of `pack_passages` (`ValueError` if inconsistent)."""

    def __init__(self, arrays: Mapping[str, npt.NDArray[Any]], count: int) -> None:
        tables: dict[str, StringTable] = {}
        for name in _FIELDS:
            data, ends = f"passage_{name}_bytes", f"passage_{name}_ends"
            if data not in arrays or ends not in arrays:
                raise ValueError(f"missing passage arrays {data!r}/{ends!r}")
            tables[name] = StringTable(arrays[data], arrays[ends])
            if len(tables[name]) != count:
                raise ValueError(f"{len(tables[name])} passage {name}s for {count} documents")
        self._ids = tables["id"]
        self._titles = tables["title"]
        self._texts = tables["text"]
        self._metadata = tables["metadata"]

    def __len__(self) -> int:
        return len(self._ids)

    def id(self, row: int) -> str:
        return self._ids[row]

    def passage(self, row: int, score: float, similarity: float | None = None) -> Passage:
        metadata = json.loads(self._metadata[row])
        return Passage(
            id=self._ids[row],
            score=float(score),
            text=self._texts[row],
            title=self._titles[row],
            metadata=metadata if isinstance(metadata, dict) else {},
            similarity=similarity,
        )
