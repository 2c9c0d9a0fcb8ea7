"""Suite-wide settings (everything offline, no hub downloads) and shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from routers.config import EmbedderConfig
from routers.embedder import Embedder
from routers.factory import build_embedder
from tests import redis_server

redis_prefix = pytest.fixture(redis_server.redis_prefix)


@pytest.fixture(scope="session")
def real_embedder() -> Embedder:
    """The real all-MiniLM-L6-v2 embedder, loaded once per test session."""
    return build_embedder(EmbedderConfig())


@pytest.fixture(scope="session")
def embedder(real_embedder: Embedder) -> Embedder:
    """The embedder a test package routes with: the real one, unless the package's conftest
    gives a fake (tests/gateway does: its tests are about the gateway, not routing quality)."""
    return real_embedder


SHARED_SAMPLES = Path(__file__).resolve().parent / "fixtures" / "shared"
"""Small committed samples of the shared evaluation folders (attribution in its README)."""


@pytest.fixture
def mmlu_pro_folder() -> Path:
    return SHARED_SAMPLES / "mmlu_pro"


@pytest.fixture
def routerbench_folder() -> Path:
    return SHARED_SAMPLES / "routerbench_subset"
