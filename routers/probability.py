"""Row-wise softmax, log-softmax and the logistic sigmoid, in float64 numpy."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["log_softmax", "sigmoid", "softmax"]

Floats = npt.NDArray[np.float64]


def log_softmax(logits: npt.NDArray[np.floating]) -> Floats:
    """log(softmax) over the last axis, stable for large logits."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return np.asarray(z - np.log(np.exp(z).sum(axis=-1, keepdims=True)), dtype=np.float64)


def softmax(logits: npt.NDArray[np.floating]) -> Floats:
    """Probabilities over the last axis."""
    return np.exp(log_softmax(logits))


def sigmoid(z: npt.NDArray[np.floating]) -> Floats:
    """1 / (1 + exp(-z)), written with tanh so it never overflows."""
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64))), np.float64)
