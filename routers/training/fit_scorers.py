"""Fitting expert scorers: one typed hyper-parameter set per kind, each able to fit.

    HeadsHyper(l2=1e-3).fit(vectors, scores)   -> HeadsScorer
    MfHyper / KnnScorerHyper                   -> the scorer of their kind

Targets may be soft (a 0-1 score); missing outcomes (NaN) are left out of the loss. The heads
and the MF model are fitted with L-BFGS (scipy) on the masked cross-entropy plus an L2
penalty; the scorers they return predict with numpy alone (`routers.scorers`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

from routers.probability import sigmoid
from routers.scorers import HeadsScorer, KnnScorer, MfScorer, Scorer, ScorerKind

__all__ = ["SCORER_HYPER", "HeadsHyper", "KnnScorerHyper", "MfHyper", "ScorerHyper"]

Floats = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
Objective = Callable[[Floats], tuple[float, Floats]]


class ScorerHyper(Protocol):
    """The hyper-parameters of one scorer kind, and the fit they drive."""

    kind: ClassVar[ScorerKind]

    def fit(self, vectors: F32, scores: Floats) -> Scorer: ...


def _masked_bce(logits: Floats, targets: Floats, mask: Floats) -> tuple[float, Floats]:
    """Mean binary cross-entropy over observed cells and its gradient w.r.t. the logits."""
    p = sigmoid(logits)
    n = max(float(mask.sum()), 1.0)
    loss = np.logaddexp(0.0, logits) - targets * logits
    grad = (p - targets) * mask / n
    return float((loss * mask).sum() / n), grad


def _targets(scores: Floats) -> tuple[Floats, Floats]:
    mask = (~np.isnan(scores)).astype(np.float64)
    return np.clip(np.nan_to_num(scores, nan=0.0), 0.0, 1.0), mask


def _prior_logits(y: Floats, mask: Floats) -> Floats:
    """Each expert's observed mean score, as a logit: the bias the fit starts from."""
    prior = np.clip((y * mask).sum(0) / np.maximum(mask.sum(0), 1), 1e-3, 1 - 1e-3)
    return np.asarray(np.log(prior / (1 - prior)), dtype=np.float64)


def _lbfgs(fun: Objective, x0: Floats, max_iter: int) -> Floats:
    result = minimize(fun, x0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return np.asarray(result.x, dtype=np.float64)


@dataclass(frozen=True)
class HeadsHyper:
    """One logistic head per expert with L2 penalty `l2`."""

    l2: float = 1e-3
    max_iter: int = 500
    kind: ClassVar[ScorerKind] = ScorerKind.HEADS

    def fit(self, vectors: F32, scores: Floats) -> HeadsScorer:
        x = np.asarray(vectors, dtype=np.float64)
        y, mask = _targets(scores)
        d, m = x.shape[1], y.shape[1]
        l2 = self.l2

        def fun(theta: Floats) -> tuple[float, Floats]:
            w, b = theta[: d * m].reshape(d, m), theta[d * m :]
            loss, g = _masked_bce(x @ w + b, y, mask)
            loss += 0.5 * l2 * float((w * w).sum())
            gw = x.T @ g + l2 * w
            return loss, np.concatenate([gw.ravel(), g.sum(0)])

        theta0 = np.concatenate([np.zeros(d * m), _prior_logits(y, mask)])
        theta = _lbfgs(fun, theta0, self.max_iter)
        return HeadsScorer(
            theta[: d * m].reshape(d, m).astype(np.float32), theta[d * m :].astype(np.float32)
        )


@dataclass(frozen=True)
class MfHyper:
    """Matrix factorisation of rank `rank` with L2 penalty `l2`, seeded initialisation."""

    rank: int = 16
    l2: float = 1e-3
    max_iter: int = 500
    seed: int = 0
    kind: ClassVar[ScorerKind] = ScorerKind.MF

    def fit(self, vectors: F32, scores: Floats) -> MfScorer:
        x = np.asarray(vectors, dtype=np.float64)
        y, mask = _targets(scores)
        d, m, rank, l2 = x.shape[1], y.shape[1], self.rank, self.l2
        rng = np.random.default_rng(self.seed)
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
            [rng.normal(0, 0.1, sizes[0]), rng.normal(0, 0.1, sizes[1]), _prior_logits(y, mask)]
        )
        p, u, b = unpack(_lbfgs(fun, theta0, self.max_iter))
        return MfScorer(p.astype(np.float32), u.astype(np.float32), b.astype(np.float32))


@dataclass(frozen=True)
class KnnScorerHyper:
    """Mean outcome of the `k` nearest training queries (weights exp(similarity / `tau`)),
    shrunk towards each expert's overall mean by `prior_weight`."""

    k: int = 50
    tau: float = 0.05
    prior_weight: float = 1.0
    kind: ClassVar[ScorerKind] = ScorerKind.KNN

    def fit(self, vectors: F32, scores: Floats) -> KnnScorer:
        return KnnScorer(
            np.asarray(vectors, np.float32),
            np.asarray(scores, np.float32),
            self.k,
            self.tau,
            self.prior_weight,
        )


SCORER_HYPER: dict[ScorerKind, type[ScorerHyper]] = {
    h.kind: h for h in (HeadsHyper, MfHyper, KnnScorerHyper)
}
"""kind -> its hyper-parameter class (defaults: `SCORER_HYPER[kind]()`)."""
