"""Fixtures for router training: a hashing bag-of-words embedder and the shared-data samples."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "shared"


class HashingEmbedder:
    """Words hashed into `dim` buckets, L2-normalised; counts the texts it embeds."""

    def __init__(self, dim: int = 64, id: str = "hash-bow") -> None:
        self._dim = dim
        self._id = id
        self.calls = 0
        self.texts = 0
        self.last: list[str] = []

    @property
    def id(self) -> str:
        return self._id

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.calls += 1
        self.texts += len(texts)
        self.last = list(texts)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                bucket = int(hashlib.md5(word.encode()).hexdigest()[:8], 16) % self._dim
                out[row, bucket] += 1.0
            out[row, 0] += 1e-3
        normalised: npt.NDArray[np.float32] = out / np.linalg.norm(out, axis=1, keepdims=True)
        return normalised


@pytest.fixture
def embedder() -> HashingEmbedder:
    return HashingEmbedder()


@pytest.fixture
def mmlu_pro_folder() -> Path:
    return FIXTURES / "mmlu_pro"


@pytest.fixture
def routerbench_folder() -> Path:
    return FIXTURES / "routerbench_subset"


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
