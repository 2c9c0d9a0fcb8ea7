"""Fixtures for router training: a hashing bag-of-words embedder and the shared-data samples."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from tests.fakes import HashingEmbedder


@pytest.fixture
def embedder() -> HashingEmbedder:
    return HashingEmbedder()


def clusters(
    n_per: int = 40, dim: int = 16, seed: int = 0
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Three well separated unit-norm clusters: (vectors, labels)."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim, dtype=np.float32)[:3] * 3.0
    x = np.concatenate([c + rng.normal(0, 0.3, (n_per, dim)) for c in centres]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.repeat(np.arange(3), n_per).astype(np.int64)
    return x, y
