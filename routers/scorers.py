"""Expert scorers as the gateway serves them: predict each expert's score on a query, numpy only.

    Scorer         the interface: `predict(vectors)` -> (n_queries, n_experts) scores in [0, 1]
    ├── HeadsScorer  one logistic head per expert, sigmoid(x . w_e + b_e)
    ├── MfScorer     RouteLLM-style matrix factorisation: sigmoid(u_e . (P x) + b_e), a shared
    │                low-rank projection P and one small vector per expert (Ong et al. 2024,
    │                arXiv:2406.18665, Sec. 4.1, generalised from a strong/weak pair to N experts)
    └── KnnScorer    similarity-weighted mean outcome of the k nearest training queries, shrunk
                     towards each expert's overall mean

`routers.selection` turns predicted scores into a choice (argmax of quality - lambda * cost).
Fitting lives in `routers.training.fit_scorers`.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from routers.probability import sigmoid

__all__ = ["SCORERS", "HeadsScorer", "KnnScorer", "MfScorer", "Scorer", "ScorerKind"]

Floats = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
Arrays = dict[str, npt.NDArray[Any]]
Params = Mapping[str, Any]


class ScorerKind(enum.StrEnum):
    HEADS = "heads"
    MF = "mf"
    KNN = "knn"


class Scorer(abc.ABC):
    """Embeddings -> predicted score per expert."""

    kind: ClassVar[ScorerKind]

    @abc.abstractmethod
    def predict(self, vectors: npt.NDArray[np.floating]) -> Floats:
        """(n_queries, n_experts) predicted scores in [0, 1]."""

    @abc.abstractmethod
    def to_arrays(self) -> Arrays:
        """The arrays an artifact stores."""

    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """The JSON scalars an artifact stores beside the arrays."""

    @classmethod
    @abc.abstractmethod
    def from_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]], params: Params) -> Self:
        """The scorer `to_arrays` and `params` describe."""


@dataclass(frozen=True, eq=False)
class HeadsScorer(Scorer):
    weights: F32  # (dim, n_experts)
    bias: F32  # (n_experts,)
    kind: ClassVar[ScorerKind] = ScorerKind.HEADS

    def predict(self, vectors: npt.NDArray[np.floating]) -> Floats:
        return sigmoid(np.asarray(vectors @ self.weights + self.bias, dtype=np.float64))

    def to_arrays(self) -> Arrays:
        return {"weights": self.weights, "bias": self.bias}

    def params(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]], params: Params) -> Self:
        return cls(
            np.asarray(arrays["weights"], np.float32), np.asarray(arrays["bias"], np.float32)
        )


@dataclass(frozen=True, eq=False)
class MfScorer(Scorer):
    projection: F32  # (dim, rank)
    experts: F32  # (rank, n_experts)
    bias: F32  # (n_experts,)
    kind: ClassVar[ScorerKind] = ScorerKind.MF

    def predict(self, vectors: npt.NDArray[np.floating]) -> Floats:
        z = (np.asarray(vectors, np.float32) @ self.projection) @ self.experts + self.bias
        return sigmoid(np.asarray(z, dtype=np.float64))

    def to_arrays(self) -> Arrays:
        return {"projection": self.projection, "experts": self.experts, "bias": self.bias}

    def params(self) -> dict[str, Any]:
        return {"rank": int(self.experts.shape[0])}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]], params: Params) -> Self:
        return cls(
            np.asarray(arrays["projection"], np.float32),
            np.asarray(arrays["experts"], np.float32),
            np.asarray(arrays["bias"], np.float32),
        )


@dataclass(frozen=True, eq=False)
class KnnScorer(Scorer):
    """(sum_j w_j y_j + prior_weight * mean) / (sum_j w_j + prior_weight), w_j = exp(s_j / tau)
    over the k most similar training queries; missing outcomes are skipped per expert."""

    vectors: F32  # (n_train, dim)
    scores: F32  # (n_train, n_experts), NaN = missing
    k: int = 50
    tau: float = 0.05
    prior_weight: float = 1.0
    kind: ClassVar[ScorerKind] = ScorerKind.KNN

    def predict(self, vectors: npt.NDArray[np.floating]) -> Floats:
        sims = np.asarray(vectors, np.float32) @ self.vectors.T
        k = min(self.k, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(sims, top, axis=1).astype(np.float64)
        w = np.exp((top_sims - top_sims.max(axis=1, keepdims=True)) / self.tau)[:, :, None]
        neigh = self.scores[top].astype(np.float64)  # (n, k, m)
        seen = ~np.isnan(neigh)
        filled = np.where(seen, neigh, 0.0)
        prior = np.nanmean(self.scores.astype(np.float64), axis=0)
        num = (w * filled).sum(axis=1) + self.prior_weight * prior
        den = (w * seen).sum(axis=1) + self.prior_weight
        return np.asarray(num / den, dtype=np.float64)

    def to_arrays(self) -> Arrays:
        return {"vectors": self.vectors, "scores": self.scores}

    def params(self) -> dict[str, Any]:
        return {"k": self.k, "tau": self.tau, "prior_weight": self.prior_weight}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]], params: Params) -> Self:
        return cls(
            np.asarray(arrays["vectors"], np.float32),
            np.asarray(arrays["scores"], np.float32),
            int(params["k"]),
            float(params["tau"]),
            float(params["prior_weight"]),
        )


SCORERS: Mapping[ScorerKind, type[Scorer]] = {s.kind: s for s in (HeadsScorer, MfScorer, KnnScorer)}
"""kind -> class, for loading an artifact by the kind its manifest names."""
