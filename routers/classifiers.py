"""Category classifiers as the gateway serves them: queries -> category probabilities, numpy only.

    Classifier           the interface: `logits(queries)` (the one abstract method), then
                         `predict_proba` = softmax(logits / temperature) for every kind
    ├── LogisticClassifier   multinomial logistic regression on the embedding
    ├── MlpClassifier        one or two ReLU hidden layers
    ├── KnnClassifier        similarity-weighted vote of the k nearest training queries
    ├── CentroidClassifier   cosine to each class's mean embedding
    └── HybridClassifier     logistic regression on the embedding plus word and character
                             TF-IDF n-grams of the text (`routers.text_features`)

Every kind reads the same `Queries` (texts and their L2-normalised embeddings) and uses what it
needs, so callers never ask which kind they hold. `temperature` comes from calibration on
held-out rows (1.0 = uncalibrated). `to_arrays` / `params` / `from_arrays` are what an artifact
stores (`routers.trained_model`), so a loaded classifier predicts exactly what the trained one
did. Fitting lives in `routers.training.fit_classifiers`.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from routers.probability import softmax
from routers.text_features import TfidfVocabulary, sparse_dot

__all__ = [
    "CLASSIFIERS",
    "CentroidClassifier",
    "Classifier",
    "ClassifierKind",
    "HybridClassifier",
    "KnnClassifier",
    "LogisticClassifier",
    "MlpClassifier",
    "Queries",
]

Floats = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]
Arrays = dict[str, npt.NDArray[Any]]
Params = Mapping[str, Any]


class ClassifierKind(enum.StrEnum):
    LOGISTIC = "logistic"
    MLP = "mlp"
    KNN = "knn"
    CENTROID = "centroid"
    HYBRID = "hybrid"


@dataclass(frozen=True, slots=True)
class Queries:
    """A batch of queries as a classifier reads them: texts and their embeddings, row by row."""

    texts: Sequence[str]
    vectors: npt.NDArray[np.floating]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.vectors):
            raise ValueError(f"{len(self.texts)} texts but {len(self.vectors)} vectors")

    def __len__(self) -> int:
        return len(self.texts)

    def rows(self, indices: Sequence[int] | Ints) -> Queries:
        picked = np.asarray(indices, dtype=np.int64)
        return Queries([self.texts[i] for i in picked], self.vectors[picked])


class Classifier(abc.ABC):
    """Queries -> category logits; probabilities, temperature and storage are shared."""

    kind: ClassVar[ClassifierKind]
    temperature: float

    @abc.abstractmethod
    def logits(self, queries: Queries) -> Floats:
        """(n, n_classes) unnormalised scores."""

    def predict_proba(self, queries: Queries) -> Floats:
        return softmax(self.logits(queries) / self.temperature)

    def with_temperature(self, temperature: float) -> Self:
        """A copy with another temperature (classifiers are frozen dataclasses)."""
        copy: Self = replace(self, temperature=temperature)  # type: ignore[type-var]
        return copy

    @abc.abstractmethod
    def to_arrays(self) -> Arrays:
        """The arrays an artifact stores."""

    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """The JSON scalars an artifact stores beside the arrays (temperature included)."""

    @classmethod
    @abc.abstractmethod
    def from_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]], params: Params) -> Self:
        """The classifier `to_arrays` and `params` describe."""


def _f32(array: npt.NDArray[Any]) -> F32:
    return np.ascontiguousarray(array, dtype=np.float32)


@dataclass(frozen=True, eq=False)
class LogisticClassifier(Classifier):
    weights: F32  # (dim, n_classes)
    bias: F32  # (n_classes,)
    temperature: float = 1.0
    kind: ClassVar[ClassifierKind] = ClassifierKind.LOGISTIC

    def logits(self, queries: Queries) -> Floats:
        return np.asarray(queries.vectors @ self.weights + self.bias, dtype=np.float64)

    def to_arrays(self) -> Arrays:
        return {"weights": self.weights, "bias": self.bias}

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]], params: Params) -> Self:
        return cls(_f32(arrays["weights"]), _f32(arrays["bias"]), float(params["temperature"]))


@dataclass(frozen=True, eq=False)
class MlpClassifier(Classifier):
    layers: tuple[tuple[F32, F32], ...]  # (weights (in, out), bias (out,)) per layer
    temperature: float = 1.0
    kind: ClassVar[ClassifierKind] = ClassifierKind.MLP

    def logits(self, queries: Queries) -> Floats:
        h = np.asarray(queries.vectors, dtype=np.float32)
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return np.asarray(h, dtype=np.float64)

    def to_arrays(self) -> Arrays:
        arrays: Arrays = {}
        for i, (w, b) in enumerate(self.layers):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, b
        return arrays

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "n_layers": len(self.layers)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]], params: Params) -> Self:
        n = int(params["n_layers"])
        layers = tuple((_f32(arrays[f"w{i}"]), _f32(arrays[f"b{i}"])) for i in range(n))
        return cls(layers, float(params["temperature"]))


@dataclass(frozen=True, eq=False)
class KnnClassifier(Classifier):
    """Vote of the k most similar training queries, each weighted by exp(similarity / tau)."""

    vectors: F32  # (n_train, dim), L2-normalised
    labels: Ints  # (n_train,)
    n_classes: int
    k: int = 15
    tau: float = 0.05
    temperature: float = 1.0
    kind: ClassVar[ClassifierKind] = ClassifierKind.KNN

    def logits(self, queries: Queries) -> Floats:
        sims = np.asarray(queries.vectors, dtype=np.float32) @ self.vectors.T
        k = min(self.k, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(sims, top, axis=1).astype(np.float64)
        weights = np.exp((top_sims - top_sims.max(axis=1, keepdims=True)) / self.tau)
        votes = np.zeros((sims.shape[0], self.n_classes), dtype=np.float64)
        np.add.at(votes, (np.arange(sims.shape[0])[:, None], self.labels[top]), weights)
        share = (votes + 1e-3) / (votes.sum(axis=1, keepdims=True) + 1e-3 * self.n_classes)
        return np.asarray(np.log(share), dtype=np.float64)

    def to_arrays(self) -> Arrays:
        return {"vectors": self.vectors, "labels": self.labels}

    def params(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "k": self.k,
            "tau": self.tau,
            "n_classes": self.n_classes,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]], params: Params) -> Self:
        return cls(
            _f32(arrays["vectors"]),
            np.asarray(arrays["labels"], dtype=np.int64),
            int(params["n_classes"]),
            int(params["k"]),
            float(params["tau"]),
            float(params["temperature"]),
        )


@dataclass(frozen=True, eq=False)
class CentroidClassifier(Classifier):
    """Cosine similarity to each class's normalised mean embedding, divided by `scale`."""

    centroids: F32  # (n_classes, dim)
    scale: float = 0.05
    temperature: float = 1.0
    kind: ClassVar[ClassifierKind] = ClassifierKind.CENTROID

    def logits(self, queries: Queries) -> Floats:
        return np.asarray(queries.vectors @ self.centroids.T, dtype=np.float64) / self.scale

    def to_arrays(self) -> Arrays:
        return {"centroids": self.centroids}

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "scale": self.scale}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]], params: Params) -> Self:
        return cls(_f32(arrays["centroids"]), float(params["scale"]), float(params["temperature"]))


@dataclass(frozen=True, eq=False)
class HybridClassifier(Classifier):
    """logits = embedding @ dense + sum over vocabularies of tfidf(text) @ sparse_i + bias."""

    dense: F32  # (dim, n_classes)
    vocabularies: tuple[TfidfVocabulary, ...]
    sparse: tuple[F32, ...]  # (len(vocabulary), n_classes) each
    bias: F32
    temperature: float = 1.0
    kind: ClassVar[ClassifierKind] = ClassifierKind.HYBRID

    def logits(self, queries: Queries) -> Floats:
        out = np.asarray(queries.vectors @ self.dense + self.bias, dtype=np.float64)
        for vocabulary, weights in zip(self.vocabularies, self.sparse, strict=True):
            out += sparse_dot(vocabulary.transform(queries.texts), weights)
        return out

    def to_arrays(self) -> Arrays:
        arrays: Arrays = {"dense": self.dense, "bias": self.bias}
        for i, (vocabulary, weights) in enumerate(zip(self.vocabularies, self.sparse, strict=True)):
            arrays.update(vocabulary.to_arrays(f"v{i}_"))
            arrays[f"v{i}_weights"] = weights
        return arrays

    def params(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "vocabularies": [v.params() for v in self.vocabularies],
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]], params: Params) -> Self:
        specs = params["vocabularies"]
        vocabularies = tuple(
            TfidfVocabulary.from_arrays(f"v{i}_", arrays, spec) for i, spec in enumerate(specs)
        )
        sparse = tuple(_f32(arrays[f"v{i}_weights"]) for i in range(len(specs)))
        return cls(
            _f32(arrays["dense"]),
            vocabularies,
            sparse,
            _f32(arrays["bias"]),
            float(params["temperature"]),
        )


CLASSIFIERS: Mapping[ClassifierKind, type[Classifier]] = {
    c.kind: c
    for c in (
        LogisticClassifier,
        MlpClassifier,
        KnnClassifier,
        CentroidClassifier,
        HybridClassifier,
    )
}
"""kind -> class, for loading an artifact by the kind its manifest names."""
