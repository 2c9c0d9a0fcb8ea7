"""Lexical search: BM25 by bm25s, kept as plain arrays.

bm25s computes every (term, document) BM25 weight at build time into a sparse matrix stored
column-per-term (CSC: `data`, `indices` = document rows, `indptr` per term), so a query's score
for a document is the sum of its terms' weights. `build_lexical` has bm25s tokenise and score
the corpus and returns those arrays plus the vocabulary; `LexicalIndex` sums the query terms'
columns with numpy (exactly what `bm25s.BM25.get_scores` does, verified in the tests) without
keeping a bm25s object, so nothing but arrays and the tokeniser settings is persisted.

Tokeniser: bm25s's (scikit-learn's) `\\b\\w\\w+\\b` words, lower-cased, English stopwords
removed, no stemming. The settings are recorded in the manifest's params (`TOKENIZER`); a
query is tokenised the same way. A word unknown to the corpus contributes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from experts.retrieval.strings import StringTable, pack

__all__ = ["BM25_PARAMS", "TOKENIZER", "LexicalIndex", "build_lexical", "tokenize"]

TOKENIZER: dict[str, Any] = {"library": "bm25s", "lower": True, "stopwords": "en", "stemmer": None}
BM25_PARAMS: dict[str, Any] = {"method": "lucene", "k1": 1.5, "b": 0.75}
_ARRAYS = ("bm25_data", "bm25_indices", "bm25_indptr", "vocab_bytes", "vocab_ends")


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Word tokens of each text, as the index was built with."""
    import bm25s  # type: ignore[import-untyped]  # loaded on first use, not by `coe serve`

    tokens: list[list[str]] = bm25s.tokenize(
        list(texts), lower=True, stopwords="en", return_ids=False, show_progress=False
    )
    return tokens


def build_lexical(texts: Sequence[str]) -> dict[str, npt.NDArray[Any]]:
    """The BM25 arrays of `texts` (one per document), ready for `save_index_artifact`."""
    import bm25s

    model = bm25s.BM25(**BM25_PARAMS)
    model.index(tokenize(texts), create_empty_token=False, show_progress=False)
    vocab = sorted(model.vocab_dict.items(), key=lambda pair: pair[1])
    if [token_id for _, token_id in vocab] != list(range(len(vocab))):
        raise RuntimeError("bm25s returned a vocabulary whose ids are not 0..n-1")
    vocab_bytes, vocab_ends = pack([token for token, _ in vocab])
    return {
        "bm25_data": np.asarray(model.scores["data"], dtype=np.float32),
        "bm25_indices": np.asarray(model.scores["indices"], dtype=np.int32),
        "bm25_indptr": np.asarray(model.scores["indptr"], dtype=np.int64),
        "vocab_bytes": vocab_bytes,
        "vocab_ends": vocab_ends,
    }


class LexicalIndex:
    """BM25 over `doc_count` documents from `build_lexical`'s arrays (checked on construction:
    `ValueError` naming the inconsistency)."""

    def __init__(self, arrays: Mapping[str, npt.NDArray[Any]], doc_count: int) -> None:
        missing = [name for name in _ARRAYS if name not in arrays]
        if missing:
            raise ValueError(f"missing lexical arrays {missing}")
        self._data = np.asarray(arrays["bm25_data"], dtype=np.float32)
        self._indices = np.asarray(arrays["bm25_indices"], dtype=np.int64)
        self._indptr = np.asarray(arrays["bm25_indptr"], dtype=np.int64)
        vocab = StringTable(arrays["vocab_bytes"], arrays["vocab_ends"]).all()
        self._vocab = {token: token_id for token_id, token in enumerate(vocab)}
        self.count = doc_count
        if len(self._indptr) != len(vocab) + 1 or int(self._indptr[0]) != 0:
            raise ValueError("BM25 term offsets do not match the vocabulary")
        if int(self._indptr[-1]) != len(self._data) or len(self._data) != len(self._indices):
            raise ValueError("BM25 weights and document rows differ in length")
        if bool(np.any(np.diff(self._indptr) < 0)):
            raise ValueError("BM25 term offsets are not increasing")
        if (
            len(self._indices)
            and not 0 <= int(self._indices.min()) <= int(self._indices.max()) < doc_count
        ):
            raise ValueError(f"BM25 document rows outside 0..{doc_count - 1}")

    def scores(self, query: str) -> npt.NDArray[np.float32]:
        """BM25 score of every document for `query` (all zero when no word is known)."""
        totals = np.zeros(self.count, dtype=np.float32)
        for token in tokenize([query])[0]:
            token_id = self._vocab.get(token)
            if token_id is None:
                continue
            start, end = int(self._indptr[token_id]), int(self._indptr[token_id + 1])
            totals[self._indices[start:end]] += self._data[start:end]
        return totals

    def search(self, query: str, k: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """(scores, rows) of at most `k` documents with a positive score, best first."""
        totals = self.scores(query)
        matching = np.flatnonzero(totals > 0)
        if len(matching) > k:
            matching = matching[np.argpartition(-totals[matching], k - 1)[:k]]
        order = matching[np.lexsort((matching, -totals[matching]))]
        return totals[order], order.astype(np.int64)
