"""Fitting category classifiers: one typed hyper-parameter set per kind, each able to fit.

    LogisticHyper(c=4.0).fit(queries, labels, n_classes)  -> LogisticClassifier
    MlpHyper / KnnHyper / CentroidHyper / HybridHyper        -> the classifier of their kind

A hyper-parameter set is the whole recipe of a fit (scikit-learn for the logistic, MLP and hybrid
kinds, numpy for the others); the classifier it returns predicts with numpy alone
(`routers.classifiers`). Classes absent from the training rows get a bias of -1e4, so a
classifier always has `n_classes` outputs in the order of the label set.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix, hstack
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier as SkMlp

from routers.classifiers import (
    CentroidClassifier,
    Classifier,
    ClassifierKind,
    HybridClassifier,
    KnnClassifier,
    LogisticClassifier,
    MlpClassifier,
    Queries,
)
from routers.training.tfidf import fit_vocabulary, sparse_matrix

__all__ = [
    "CLASSIFIER_HYPER",
    "CentroidHyper",
    "ClassifierHyper",
    "HybridHyper",
    "KnnHyper",
    "LogisticHyper",
    "MlpHyper",
]

F32 = npt.NDArray[np.float32]
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


class ClassifierHyper(Protocol):
    """The hyper-parameters of one classifier kind, and the fit they drive."""

    kind: ClassVar[ClassifierKind]

    def fit(self, queries: Queries, labels: Ints, n_classes: int) -> Classifier: ...


@contextmanager
def _capped_iterations() -> Iterator[None]:
    """Iteration caps are deliberate: scikit-learn's ConvergenceWarning is not news here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _f32(array: npt.NDArray[np.floating]) -> F32:
    return np.ascontiguousarray(array, dtype=np.float32)


def _full_linear(
    coef: Floats, intercept: Floats, classes: Ints, n_features: int, n_classes: int
) -> tuple[F32, F32]:
    """scikit-learn's (classes x features) linear layer as (features x n_classes) weights and
    a bias, with one row for binary problems split symmetrically into two."""
    weights = np.zeros((n_features, n_classes), dtype=np.float32)
    bias = np.full(n_classes, -1e4, dtype=np.float32)  # classes absent from training
    if len(classes) == 2:  # scikit-learn keeps one row for binary problems
        coef = np.vstack([-coef[0], coef[0]]) / 2.0
        intercept = np.array([-intercept[0], intercept[0]]) / 2.0
    weights[:, classes] = coef.T
    bias[classes] = intercept
    return weights, bias


@dataclass(frozen=True)
class LogisticHyper:
    """Multinomial logistic regression: inverse regularisation strength `c`."""

    c: float = 4.0
    max_iter: int = 3000
    kind: ClassVar[ClassifierKind] = ClassifierKind.LOGISTIC

    def fit(self, queries: Queries, labels: Ints, n_classes: int) -> LogisticClassifier:
        model = LogisticRegression(C=self.c, max_iter=self.max_iter)
        with _capped_iterations():
            model.fit(queries.vectors, labels)
        weights, bias = _full_linear(
            model.coef_,
            model.intercept_,
            model.classes_.astype(np.int64),
            queries.vectors.shape[1],
            n_classes,
        )
        return LogisticClassifier(weights, bias)


@dataclass(frozen=True)
class MlpHyper:
    """ReLU hidden layers of sizes `hidden`, L2 penalty `alpha` (scikit-learn's MLP)."""

    hidden: tuple[int, ...] = (256,)
    alpha: float = 1e-3
    max_iter: int = 200
    seed: int = 0
    kind: ClassVar[ClassifierKind] = ClassifierKind.MLP

    def fit(self, queries: Queries, labels: Ints, n_classes: int) -> MlpClassifier:
        vectors = queries.vectors
        model = SkMlp(
            hidden_layer_sizes=self.hidden,
            alpha=self.alpha,
            max_iter=self.max_iter,
            early_stopping=len(vectors) >= 500,
            random_state=self.seed,
        )
        with _capped_iterations():
            model.fit(vectors, labels)
        layers = [(_f32(w), _f32(b)) for w, b in zip(model.coefs_, model.intercepts_, strict=True)]
        classes = model.classes_.astype(np.int64)
        w_out, b_out = layers[-1]
        if len(classes) == 2:  # a single logistic output unit
            w_out = np.hstack([-w_out / 2, w_out / 2])
            b_out = np.concatenate([-b_out / 2, b_out / 2])
        full_w = np.zeros((w_out.shape[0], n_classes), dtype=np.float32)
        full_b = np.full(n_classes, -1e4, dtype=np.float32)
        full_w[:, classes] = w_out
        full_b[classes] = b_out
        layers[-1] = (full_w, full_b)
        return MlpClassifier(tuple(layers))


@dataclass(frozen=True)
class KnnHyper:
    """Vote of the `k` nearest training queries, weights exp(similarity / `tau`)."""

    k: int = 15
    tau: float = 0.05
    kind: ClassVar[ClassifierKind] = ClassifierKind.KNN

    def fit(self, queries: Queries, labels: Ints, n_classes: int) -> KnnClassifier:
        return KnnClassifier(
            _f32(queries.vectors), np.asarray(labels, dtype=np.int64), n_classes, self.k, self.tau
        )


@dataclass(frozen=True)
class CentroidHyper:
    """Cosine to each class's mean embedding, divided by `scale`."""

    scale: float = 0.05
    kind: ClassVar[ClassifierKind] = ClassifierKind.CENTROID

    def fit(self, queries: Queries, labels: Ints, n_classes: int) -> CentroidClassifier:
        vectors = queries.vectors
        centroids = np.zeros((n_classes, vectors.shape[1]), dtype=np.float32)
        for c in range(n_classes):
            members = vectors[labels == c]
            if len(members):
                mean = members.mean(axis=0)
                centroids[c] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        return CentroidClassifier(centroids, self.scale)


@dataclass(frozen=True)
class HybridHyper:
    """Logistic regression on the embedding plus word (1-2) and char_wb (2-5) TF-IDF n-grams.

    The embedding block is scaled by `embedding_scale` before fitting (folded into the dense
    weights afterwards), so one regularisation strength `c` suits both feature kinds.
    """

    c: float = 8.0
    word_features: int = 20_000
    char_features: int = 50_000
    embedding_scale: float = 1.0
    max_iter: int = 3000
    kind: ClassVar[ClassifierKind] = ClassifierKind.HYBRID

    def fit(self, queries: Queries, labels: Ints, n_classes: int) -> HybridClassifier:
        texts = list(queries.texts)
        vocabularies = (
            fit_vocabulary(texts, "word", (1, 2), max_features=self.word_features),
            fit_vocabulary(texts, "char_wb", (2, 5), max_features=self.char_features),
        )
        blocks = [sparse_matrix(v.transform(texts), len(v)) for v in vocabularies]
        dense_block = csr_matrix(np.asarray(queries.vectors, np.float32) * self.embedding_scale)
        x = hstack([*blocks, dense_block]).tocsr()
        with _capped_iterations():
            model = LogisticRegression(C=self.c, max_iter=self.max_iter).fit(x, labels)
        if len(model.classes_) < 2:
            raise ValueError("need at least two classes")
        coef, bias = _full_linear(
            model.coef_, model.intercept_, model.classes_.astype(np.int64), x.shape[1], n_classes
        )
        sizes = np.cumsum([0, *(len(v) for v in vocabularies)])
        sparse = tuple(coef[sizes[i] : sizes[i + 1]] for i in range(len(vocabularies)))
        dense = coef[sizes[-1] :] * np.float32(self.embedding_scale)
        return HybridClassifier(dense, vocabularies, sparse, bias)


CLASSIFIER_HYPER: dict[ClassifierKind, type[ClassifierHyper]] = {
    h.kind: h for h in (LogisticHyper, MlpHyper, KnnHyper, CentroidHyper, HybridHyper)
}
"""kind -> its hyper-parameter class (defaults: `CLASSIFIER_HYPER[kind]()`)."""
