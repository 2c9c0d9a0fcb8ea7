"""Fit a `TfidfVocabulary` with scikit-learn, and stack sparse rows into a scipy matrix.

The vocabulary reproduces `TfidfVectorizer(lowercase=True, sublinear_tf=True, norm="l2")` (see
`routers.text_features`), so the served router needs neither scikit-learn nor pickle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import TfidfVectorizer

from routers.text_features import SparseRow, TfidfVocabulary

__all__ = ["fit_vocabulary", "sparse_matrix"]


def fit_vocabulary(
    texts: Sequence[str],
    analyzer: str = "word",
    ngram: tuple[int, int] = (1, 2),
    *,
    max_features: int | None = 20_000,
    min_df: int = 2,
) -> TfidfVocabulary:
    """The n-grams of `analyzer` that occur in at least `min_df` texts, with their idf."""
    vectorizer = TfidfVectorizer(
        analyzer=analyzer,
        ngram_range=ngram,
        min_df=min_df,
        max_features=max_features,
        sublinear_tf=True,
        dtype=np.float32,
    )
    try:
        vectorizer.fit(list(texts))
    except ValueError as exc:  # scikit-learn: "After pruning, no terms remain ..."
        raise ValueError(
            f"no {analyzer} n-gram occurs in {min_df} or more of the {len(texts)} training "
            "queries, so the TF-IDF vocabulary is empty: give more queries, or train a "
            "classifier on embeddings only (logistic, mlp, knn, centroid)"
        ) from exc
    terms = [""] * len(vectorizer.vocabulary_)
    for term, i in vectorizer.vocabulary_.items():
        terms[i] = term
    return TfidfVocabulary(
        analyzer, ngram, tuple(terms), np.asarray(vectorizer.idf_, dtype=np.float32)
    )


def sparse_matrix(rows: Sequence[SparseRow], n_features: int) -> Any:
    """The rows as a scipy CSR matrix (for fitting with scikit-learn)."""
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r[0]) for r in rows])
    indices = np.concatenate([r[0] for r in rows]) if rows else np.empty(0, np.int64)
    values = np.concatenate([r[1] for r in rows]) if rows else np.empty(0, np.float32)
    return csr_matrix((values, indices, indptr), shape=(len(rows), n_features))
