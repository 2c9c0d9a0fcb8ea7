"""Direct expert scorers: predict each expert's score on a query from its embedding.

    HeadsScorer  one logistic head per expert, sigmoid(x . w_e + b_e), fitted jointly
    MfScorer     RouteLLM-style matrix factorisation: sigmoid(u_e . (P x) + b_e), a shared
                 low-rank projection P and one small vector per expert (Ong et al. 2024,
                 arXiv:2406.18665, Sec. 4.1 "Matrix factorization", generalised from a
                 strong/weak pair to N experts)
    KnnScorer    similarity-weighted mean outcome of the k nearest training queries, shrunk
                 towards each expert's overall mean

`predict(vectors)` returns an (n_queries, n_experts) array of predicted scores in [0, 1];
`routers.selection` turns it into a choice (argmax of quality - lambda * cost).
Targets may be soft (a 0-1 score); missing outcomes (NaN) are left out of the loss. The
heads and the MF model are fitted with L-BFGS (scipy) on the cross-entropy plus an L2 penalty;
inference is numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = ["SCORERS", "HeadsScorer", "KnnScorer", "MfScorer", "Scorer"]

Floats = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
Arrays = dict[str, npt.NDArray[Any]]


@runtime_checkable
class Scorer(Protocol):
    kind: ClassVar[str]

    def predict(self, vectors: npt.NDArray[np.floating]) -> Floats: ...

    def to_arrays(self) -> Arrays: ...

    def params(self) -> dict[str, Any]: ...


def _sigmoid(z: Floats) -> Floats:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)), dtype=np.float64)


def _masked_bce(logits: Floats, targets: Floats, mask: Floats) -> tuple[float, Floats]:
    """Mean binary cross-entropy over observed cells and its gradient w.r.t. the logits."""
    p = _sigmoid(logits)
    n = max(float(mask.sum()), 1.0)
    loss = np.logaddexp(0.0, logits) - targets * logits
    grad = (p - targets) * mask / n
    return float((loss * mask).sum() / n), grad


def _targets(scores: Floats) -> tuple[Floats, Floats]:
    mask = (~np.isnan(scores)).astype(np.float64)
    return np.clip(np.nan_to_num(scores, nan=0.0), 0.0, 1.0), mask


def _lbfgs(fun: Any, x0: Floats, max_iter: int) -> Floats:
    from scipy.optimize import minimize

    result = minimize(fun, x0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return np.asarray(result.x, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class HeadsScorer:
    weights: F32  # (dim, n_experts)
    bias: F32  # (n_experts,)
    kind: ClassVar[str] = "heads"

    @classmethod
    def fit(
        cls, vectors: F32, scores: Floats, *, l2: float = 1e-3, max_iter: int = 500
    ) -> HeadsScorer:
        x = np.asarray(vectors, dtype=np.float64)
        y, mask = _targets(scores)
        d, m = x.shape[1], y.shape[1]
        prior = np.clip((y * mask).sum(0) / np.maximum(mask.sum(0), 1), 1e-3, 1 - 1e-3)

        def fun(theta: Floats) -> tuple[float, Floats]:
            w, b = theta[: d * m].reshape(d, m), theta[d * m :]
            loss, g = _masked_bce(x @ w + b, y, mask)
            loss += 0.5 * l2 * float((w * w).sum())
            gw = x.T @ g + l2 * w
            return loss, np.concatenate([gw.ravel(), g.sum(0)])

        theta0 = np.concatenate([np.zeros(d * m), np.log(prior / (1 - prior))])
        theta = _lbfgs(fun, theta0, max_iter)
        return cls(
            theta[: d * m].reshape(d, m).astype(np.float32), theta[d * m :].astype(np.float32)
        )

    def predict(self, vectors: npt.NDArray[np.floating]) -> Floats:
        return _sigmoid(np.asarray(vectors @ self.weights + self.bias, dtype=np.float64))

    def to_arrays(self) -> Arrays:
        return {"weights": self.weights, "bias": self.bias}

    def params(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, npt.NDArray[Any]], params: Mapping[str, Any]
    ) -> HeadsScorer:
        return cls(
            np.asarray(arrays["weights"], np.float32), np.asarray(arrays["bias"], np.float32)
        )


@dataclass(frozen=True, eq=False)
class MfScorer:
    projection: F32  # (dim, rank)
    experts: F32  # (rank, n_experts)
    bias: F32  # (n_experts,)
    kind: ClassVar[str] = "mf"

    @classmethod
    def fit(
        cls,
        vectors: F32,
        scores: Floats,
        *,
        rank: int = 16,
        l2: float = 1e-3,
        max_iter: int = 500,
        seed: int = 0,
    ) -> MfScorer:
        x = np.asarray(vectors, dtype=np.float64)
        y, mask = _targets(scores)
        d, m = x.shape[1], y.shape[1]
        rng = np.random.default_rng(seed)
        prior = np.clip((y * mask).sum(0) / np.maximum(mask.sum(0), 1), 1e-3, 1 - 1e-3)
        sizes = (d * rank, rank * m)

        def unpack(theta: Floats) -> tuple[Floats, Floats, Floats]:
            p = theta[: sizes[0]].reshape(d, rank)
            u = theta[sizes[0] : sizes[0] + sizes[1]].reshape(rank, m)
            return p, u, theta[sizes[0] + sizes[1] :]

        def fun(theta: Floats) -> tuple[float, Floats]:
            p, u, b = unpack(theta)
            h = x @ p
            loss, g = _masked_bce(h @ u + b, y, mask)
            loss += 0.5 * l2 * float((p * p).sum() + (u * u).sum())
            gu = h.T @ g + l2 * u
            gp = x.T @ (g @ u.T) + l2 * p
            return loss, np.concatenate([gp.ravel(), gu.ravel(), g.sum(0)])

        theta0 = np.concatenate(
            [
                rng.normal(0, 0.1, sizes[0]),
                rng.normal(0, 0.1, sizes[1]),
                np.log(prior / (1 - prior)),
            ]
        )
        p, u, b = unpack(_lbfgs(fun, theta0, max_iter))
        return cls(p.astype(np.float32), u.astype(np.float32), b.astype(np.float32))

    def predict(self, vectors: npt.NDArray[np.floating]) -> Floats:
        z = (np.asarray(vectors, np.float32) @ self.projection) @ self.experts + self.bias
        return _sigmoid(np.asarray(z, dtype=np.float64))

    def to_arrays(self) -> Arrays:
        return {"projection": self.projection, "experts": self.experts, "bias": self.bias}

    def params(self) -> dict[str, Any]:
        return {"rank": int(self.experts.shape[0])}

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, npt.NDArray[Any]], params: Mapping[str, Any]
    ) -> MfScorer:
        return cls(
            np.asarray(arrays["projection"], np.float32),
            np.asarray(arrays["experts"], np.float32),
            np.asarray(arrays["bias"], np.float32),
        )


@dataclass(frozen=True, eq=False)
class KnnScorer:
    """(sum_j w_j y_j + prior_weight * mean) / (sum_j w_j + prior_weight), w_j = exp(s_j / tau)
    over the k most similar training queries; missing outcomes are skipped per expert."""

    vectors: F32  # (n_train, dim)
    scores: F32  # (n_train, n_experts), NaN = missing
    k: int = 50
    tau: float = 0.05
    prior_weight: float = 1.0
    kind: ClassVar[str] = "knn"

    @classmethod
    def fit(
        cls,
        vectors: F32,
        scores: Floats,
        *,
        k: int = 50,
        tau: float = 0.05,
        prior_weight: float = 1.0,
    ) -> KnnScorer:
        return cls(
            np.asarray(vectors, np.float32), np.asarray(scores, np.float32), k, tau, prior_weight
        )

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
    def from_arrays(
        cls, arrays: Mapping[str, npt.NDArray[Any]], params: Mapping[str, Any]
    ) -> KnnScorer:
        return cls(
            np.asarray(arrays["vectors"], np.float32),
            np.asarray(arrays["scores"], np.float32),
            int(params["k"]),
            float(params["tau"]),
            float(params["prior_weight"]),
        )


SCORERS: dict[str, Any] = {s.kind: s for s in (HeadsScorer, MfScorer, KnnScorer)}
