"""Category classifiers on query embeddings: fit with scikit-learn or numpy, predict with numpy.

    LogisticClassifier   multinomial logistic regression (the strong default)
    MlpClassifier        one or two ReLU hidden layers
    KnnClassifier        similarity-weighted vote of the k nearest training queries
    CentroidClassifier   cosine to each class's mean embedding
    HybridClassifier     logistic regression on the embedding plus word and character TF-IDF
                         n-grams of the text (`routers.text_features`); needs the texts too

Every classifier turns an (n, dim) array of L2-normalised embeddings into (n, n_classes)
`logits`; `predict_proba` is softmax(logits / temperature), where `temperature` comes from
`calibration.fit_temperature` on held-out data (1.0 = uncalibrated). `to_arrays` /
`from_arrays` give the plain arrays an artifact stores (`routers.artifact`), so a loaded
classifier predicts exactly what the trained one did.

scikit-learn is needed only to `fit` the logistic and MLP classifiers.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from routers.calibration import log_softmax, softmax
from routers.text_features import TfidfVocabulary, sparse_dot, sparse_matrix

__all__ = [
    "CLASSIFIERS",
    "CentroidClassifier",
    "Classifier",
    "HybridClassifier",
    "KnnClassifier",
    "LogisticClassifier",
    "MlpClassifier",
]

Floats = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]
Arrays = dict[str, npt.NDArray[Any]]


@runtime_checkable
class Classifier(Protocol):
    """Embeddings -> class logits; the shared part lives in `predict_proba`."""

    kind: ClassVar[str]

    @property
    def temperature(self) -> float: ...

    def logits(self, vectors: npt.NDArray[np.floating]) -> Floats: ...

    def predict_proba(self, vectors: npt.NDArray[np.floating]) -> Floats: ...

    def to_arrays(self) -> Arrays: ...

    def params(self) -> dict[str, Any]: ...


@contextmanager
def _capped_iterations() -> Iterator[None]:
    """Iteration caps are deliberate: scikit-learn's ConvergenceWarning is not news here."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _proba(model: Classifier, vectors: npt.NDArray[np.floating]) -> Floats:
    return softmax(model.logits(vectors) / model.temperature)


def _f32(array: npt.NDArray[Any]) -> F32:
    return np.ascontiguousarray(array, dtype=np.float32)


@dataclass(frozen=True, eq=False)
class LogisticClassifier:
    weights: F32  # (dim, n_classes)
    bias: F32  # (n_classes,)
    temperature: float = 1.0
    kind: ClassVar[str] = "logistic"

    @classmethod
    def fit(
        cls, vectors: F32, labels: Ints, n_classes: int, *, c: float = 10.0, max_iter: int = 3000
    ) -> LogisticClassifier:
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=c, max_iter=max_iter)
        with _capped_iterations():
            model.fit(vectors, labels)
        weights = np.zeros((vectors.shape[1], n_classes), dtype=np.float32)
        bias = np.full(n_classes, -1e4, dtype=np.float32)  # classes absent from training
        classes = model.classes_.astype(np.int64)
        if len(classes) == 2:  # sklearn keeps one row for binary problems
            coef = np.vstack([-model.coef_[0], model.coef_[0]]) / 2.0
            intercept = np.array([-model.intercept_[0], model.intercept_[0]]) / 2.0
        else:
            coef, intercept = model.coef_, model.intercept_
        weights[:, classes] = coef.T
        bias[classes] = intercept
        return cls(weights, bias)

    def logits(self, vectors: npt.NDArray[np.floating]) -> Floats:
        return np.asarray(vectors @ self.weights + self.bias, dtype=np.float64)

    def predict_proba(self, vectors: npt.NDArray[np.floating]) -> Floats:
        return _proba(self, vectors)

    def to_arrays(self) -> Arrays:
        return {"weights": self.weights, "bias": self.bias}

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, npt.NDArray[Any]], params: Mapping[str, Any]
    ) -> LogisticClassifier:
        return cls(_f32(arrays["weights"]), _f32(arrays["bias"]), float(params["temperature"]))


@dataclass(frozen=True, eq=False)
class MlpClassifier:
    layers: tuple[tuple[F32, F32], ...]  # (weights (in, out), bias (out,)) per layer
    temperature: float = 1.0
    kind: ClassVar[str] = "mlp"

    @classmethod
    def fit(
        cls,
        vectors: F32,
        labels: Ints,
        n_classes: int,
        *,
        hidden: tuple[int, ...] = (256,),
        alpha: float = 1e-3,
        max_iter: int = 200,
        seed: int = 0,
    ) -> MlpClassifier:
        from sklearn.neural_network import MLPClassifier as SkMlp

        model = SkMlp(
            hidden_layer_sizes=hidden,
            alpha=alpha,
            max_iter=max_iter,
            early_stopping=len(vectors) >= 500,
            random_state=seed,
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
        return cls(tuple(layers))

    def logits(self, vectors: npt.NDArray[np.floating]) -> Floats:
        h = np.asarray(vectors, dtype=np.float32)
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return np.asarray(h, dtype=np.float64)

    def predict_proba(self, vectors: npt.NDArray[np.floating]) -> Floats:
        return _proba(self, vectors)

    def to_arrays(self) -> Arrays:
        arrays: Arrays = {}
        for i, (w, b) in enumerate(self.layers):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, b
        return arrays

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "n_layers": len(self.layers)}

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, npt.NDArray[Any]], params: Mapping[str, Any]
    ) -> MlpClassifier:
        n = int(params["n_layers"])
        layers = tuple((_f32(arrays[f"w{i}"]), _f32(arrays[f"b{i}"])) for i in range(n))
        return cls(layers, float(params["temperature"]))


@dataclass(frozen=True, eq=False)
class KnnClassifier:
    """Vote of the k most similar training queries, each weighted by exp(similarity / tau)."""

    vectors: F32  # (n_train, dim), L2-normalised
    labels: Ints  # (n_train,)
    n_classes: int
    k: int = 15
    tau: float = 0.05
    temperature: float = 1.0
    kind: ClassVar[str] = "knn"

    @classmethod
    def fit(
        cls, vectors: F32, labels: Ints, n_classes: int, *, k: int = 15, tau: float = 0.05
    ) -> KnnClassifier:
        return cls(_f32(vectors), np.asarray(labels, dtype=np.int64), n_classes, k, tau)

    def logits(self, vectors: npt.NDArray[np.floating]) -> Floats:
        sims = np.asarray(vectors, dtype=np.float32) @ self.vectors.T
        k = min(self.k, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(sims, top, axis=1).astype(np.float64)
        weights = np.exp((top_sims - top_sims.max(axis=1, keepdims=True)) / self.tau)
        votes = np.zeros((sims.shape[0], self.n_classes), dtype=np.float64)
        np.add.at(votes, (np.arange(sims.shape[0])[:, None], self.labels[top]), weights)
        share = (votes + 1e-3) / (votes.sum(axis=1, keepdims=True) + 1e-3 * self.n_classes)
        return np.asarray(np.log(share), dtype=np.float64)

    def predict_proba(self, vectors: npt.NDArray[np.floating]) -> Floats:
        return _proba(self, vectors)

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
    def from_arrays(
        cls, arrays: Mapping[str, npt.NDArray[Any]], params: Mapping[str, Any]
    ) -> KnnClassifier:
        return cls(
            _f32(arrays["vectors"]),
            np.asarray(arrays["labels"], dtype=np.int64),
            int(params["n_classes"]),
            int(params["k"]),
            float(params["tau"]),
            float(params["temperature"]),
        )


@dataclass(frozen=True, eq=False)
class CentroidClassifier:
    """Cosine similarity to each class's normalised mean embedding, divided by `scale`."""

    centroids: F32  # (n_classes, dim)
    scale: float = 0.05
    temperature: float = 1.0
    kind: ClassVar[str] = "centroid"

    @classmethod
    def fit(
        cls, vectors: F32, labels: Ints, n_classes: int, *, scale: float = 0.05
    ) -> CentroidClassifier:
        dim = vectors.shape[1]
        centroids = np.zeros((n_classes, dim), dtype=np.float32)
        for c in range(n_classes):
            members = vectors[labels == c]
            if len(members):
                mean = members.mean(axis=0)
                centroids[c] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        return cls(centroids, scale)

    def logits(self, vectors: npt.NDArray[np.floating]) -> Floats:
        return np.asarray(vectors @ self.centroids.T, dtype=np.float64) / self.scale

    def predict_proba(self, vectors: npt.NDArray[np.floating]) -> Floats:
        return _proba(self, vectors)

    def to_arrays(self) -> Arrays:
        return {"centroids": self.centroids}

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "scale": self.scale}

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, npt.NDArray[Any]], params: Mapping[str, Any]
    ) -> CentroidClassifier:
        return cls(_f32(arrays["centroids"]), float(params["scale"]), float(params["temperature"]))


@dataclass(frozen=True, eq=False)
class HybridClassifier:
    """logits = embedding @ dense + sum over vocabularies of tfidf(text) @ sparse_i + bias.

    The embedding block is scaled by `embedding_scale` before fitting (folded into `dense`), so
    one regularisation strength suits both feature kinds.
    """

    dense: F32  # (dim, n_classes)
    vocabularies: tuple[TfidfVocabulary, ...]
    sparse: tuple[F32, ...]  # (len(vocabulary), n_classes) each
    bias: F32
    temperature: float = 1.0
    kind: ClassVar[str] = "hybrid"

    @classmethod
    def fit(
        cls,
        texts: list[str],
        vectors: F32,
        labels: Ints,
        n_classes: int,
        *,
        c: float = 8.0,
        word_features: int = 20_000,
        char_features: int = 50_000,
        embedding_scale: float = 1.0,
        max_iter: int = 3000,
    ) -> HybridClassifier:
        from scipy.sparse import csr_matrix, hstack
        from sklearn.linear_model import LogisticRegression

        vocabularies = (
            TfidfVocabulary.fit(texts, "word", (1, 2), max_features=word_features),
            TfidfVocabulary.fit(texts, "char_wb", (2, 5), max_features=char_features),
        )
        blocks = [sparse_matrix(v.transform(texts), len(v)) for v in vocabularies]
        x = hstack([*blocks, csr_matrix(np.asarray(vectors, np.float32) * embedding_scale)]).tocsr()
        with _capped_iterations():
            model = LogisticRegression(C=c, max_iter=max_iter).fit(x, labels)
        if len(model.classes_) < 2:
            raise ValueError("need at least two classes")
        coef = np.zeros((x.shape[1], n_classes), dtype=np.float32)
        bias = np.full(n_classes, -1e4, dtype=np.float32)
        classes = model.classes_.astype(np.int64)
        if len(classes) == 2:
            coef[:, classes] = np.stack([-model.coef_[0], model.coef_[0]], axis=1) / 2.0
            bias[classes] = np.array([-model.intercept_[0], model.intercept_[0]]) / 2.0
        else:
            coef[:, classes] = model.coef_.T
            bias[classes] = model.intercept_
        sizes = np.cumsum([0, *(len(v) for v in vocabularies)])
        sparse = tuple(coef[sizes[i] : sizes[i + 1]] for i in range(len(vocabularies)))
        dense = coef[sizes[-1] :] * np.float32(embedding_scale)
        return cls(dense, vocabularies, sparse, bias)

    def logits_from(self, vectors: npt.NDArray[np.floating], texts: list[str]) -> Floats:
        out = np.asarray(vectors @ self.dense + self.bias, dtype=np.float64)
        for vocabulary, weights in zip(self.vocabularies, self.sparse, strict=True):
            out += sparse_dot(vocabulary.transform(texts), weights)
        return out

    def predict_proba_from(self, vectors: npt.NDArray[np.floating], texts: list[str]) -> Floats:
        return softmax(self.logits_from(vectors, texts) / self.temperature)

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
    def from_arrays(
        cls, arrays: Mapping[str, npt.NDArray[Any]], params: Mapping[str, Any]
    ) -> HybridClassifier:
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


CLASSIFIERS: dict[str, Any] = {
    c.kind: c
    for c in (
        LogisticClassifier,
        MlpClassifier,
        KnnClassifier,
        CentroidClassifier,
        HybridClassifier,
    )
}
"""kind -> class, for loading an artifact by its manifest's kind."""


def with_temperature(model: Any, temperature: float) -> Any:
    """A copy of a classifier with another temperature (classifiers are frozen)."""
    return replace(model, temperature=temperature)


def nll(model: Classifier, vectors: npt.NDArray[np.floating], labels: Ints) -> float:
    logp = log_softmax(model.logits(vectors) / model.temperature)
    return float(-logp[np.arange(len(labels)), labels].mean())
