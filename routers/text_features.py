"""TF-IDF n-gram features, applied in plain Python + numpy (fitted by `routers.training.tfidf`).

Sentence embeddings blur the surface cues that give a subject away ("mL", "tort", "Big-O");
word and character n-grams keep them. A `TfidfVocabulary` reproduces scikit-learn's
`TfidfVectorizer(lowercase=True, sublinear_tf=True, norm="l2")` for the `word` analyzer
(token pattern `(?u)\\b\\w\\w+\\b`) and the `char_wb` analyzer exactly, from two stored
arrays (terms, idf), so a saved router needs neither scikit-learn nor pickle to run.

`transform` returns one sparse row per text as (feature indices, values); a linear model
applies itself to a row with `values @ weights[indices]`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["ANALYZERS", "SparseRow", "TfidfVocabulary", "sparse_dot"]

F32 = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]
SparseRow = tuple[Ints, F32]

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_WHITESPACES = re.compile(r"\s\s+")
ANALYZERS = ("word", "char_wb")


def _word_ngrams(text: str, lo: int, hi: int) -> Iterable[str]:
    tokens = _TOKEN.findall(text.lower())
    for n in range(lo, hi + 1):
        for i in range(len(tokens) - n + 1):
            yield tokens[i] if n == 1 else " ".join(tokens[i : i + n])


def _char_wb_ngrams(text: str, lo: int, hi: int) -> Iterable[str]:
    """scikit-learn's `_char_wb_ngrams`: n-grams inside space-padded words."""
    for word in _WHITESPACES.sub(" ", text.lower()).split():
        padded = f" {word} "
        length = len(padded)
        for n in range(lo, hi + 1):
            offset = 0
            yield padded[offset : offset + n]
            while offset + n < length:
                offset += 1
                yield padded[offset : offset + n]
            if offset == 0:  # a word shorter than n is counted once
                break


@dataclass(frozen=True, eq=False)
class TfidfVocabulary:
    analyzer: str
    ngram: tuple[int, int]
    terms: tuple[str, ...]
    idf: F32
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.analyzer not in ANALYZERS:
            raise ValueError(f"analyzer must be one of {ANALYZERS}")
        if len(self.terms) != len(self.idf):
            raise ValueError("terms and idf differ in length")
        self._index.update({term: i for i, term in enumerate(self.terms)})

    def __len__(self) -> int:
        return len(self.terms)

    def _ngrams(self, text: str) -> Iterable[str]:
        lo, hi = self.ngram
        return (
            _word_ngrams(text, lo, hi) if self.analyzer == "word" else _char_wb_ngrams(text, lo, hi)
        )

    def transform_one(self, text: str) -> SparseRow:
        counts = Counter(i for g in self._ngrams(text) if (i := self._index.get(g)) is not None)
        if not counts:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        indices = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tf = np.fromiter((1.0 + math.log(c) for c in counts.values()), np.float32, len(counts))
        values = tf * self.idf[indices]
        values /= max(float(np.linalg.norm(values)), 1e-12)
        order = np.argsort(indices)
        return indices[order], values[order].astype(np.float32)

    def transform(self, texts: Sequence[str]) -> list[SparseRow]:
        return [self.transform_one(t) for t in texts]

    def to_arrays(self, prefix: str) -> dict[str, npt.NDArray[Any]]:
        return {f"{prefix}terms": np.array(self.terms, dtype=str), f"{prefix}idf": self.idf}

    def params(self) -> dict[str, Any]:
        return {"analyzer": self.analyzer, "ngram": list(self.ngram)}

    @classmethod
    def from_arrays(
        cls, prefix: str, arrays: Mapping[str, npt.NDArray[Any]], params: Mapping[str, Any]
    ) -> TfidfVocabulary:
        lo, hi = params["ngram"]
        terms = tuple(str(t) for t in arrays[f"{prefix}terms"].tolist())
        return cls(
            str(params["analyzer"]),
            (int(lo), int(hi)),
            terms,
            np.asarray(arrays[f"{prefix}idf"], np.float32),
        )


def sparse_dot(rows: Sequence[SparseRow], weights: F32) -> npt.NDArray[np.float64]:
    """rows @ weights for sparse rows and a dense (n_features, k) matrix."""
    out = np.zeros((len(rows), weights.shape[1]), dtype=np.float64)
    for i, (indices, values) in enumerate(rows):
        if len(indices):
            out[i] = values @ weights[indices]
    return out
