"""Embedders: the MiniLM reference, the ONNX twin, the LRU cache, the factory and config."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydantic
import pytest

from routers.batching import BatchingEmbedder
from routers.config import EmbedderConfig, RouterConfig
from routers.embedder import (
    CachedEmbedder,
    Embedder,
    OnnxEmbedder,
    SentenceTransformerEmbedder,
    resolve_model_path,
)
from routers.factory import build_embedder, build_router
from routers.knn import KnnRouter
from tests.fakes import FakeEmbedder

TEXTS = [
    "What is the integral of x^2?",
    "Write a poem about the sea.",
    "short",
    "A much longer sentence that goes on and on about routing queries to experts " * 8,
]


def test_minilm_vectors(minilm_raw: SentenceTransformerEmbedder) -> None:
    vectors = minilm_raw.embed(TEXTS)
    assert isinstance(minilm_raw, Embedder)
    assert minilm_raw.dim == 384
    assert minilm_raw.id == "all-MiniLM-L6-v2"
    assert vectors.shape == (len(TEXTS), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert minilm_raw.embed([]).shape == (0, 384)


def test_minilm_same_text_same_vector_alone_or_in_a_batch(
    minilm_raw: SentenceTransformerEmbedder,
) -> None:
    alone = minilm_raw.embed([TEXTS[0]])[0]
    assert np.array_equal(alone, minilm_raw.embed([TEXTS[0]])[0])
    assert float(alone @ minilm_raw.embed(TEXTS)[0]) > 0.9999


def test_minilm_from_threads(minilm_raw: SentenceTransformerEmbedder) -> None:
    expected = minilm_raw.embed(TEXTS[:2])
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: minilm_raw.embed(TEXTS[:2]), range(8)))
    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-6)


def test_onnx_matches_sentence_transformers(
    minilm_raw: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    onnx = OnnxEmbedder(onnx_file=tmp_path / "minilm.onnx")  # exported from the torch weights
    assert onnx.dim == 384
    reference = minilm_raw.embed(TEXTS)
    for batch in (TEXTS, [TEXTS[2]]):  # padded to the batch's longest, and alone
        vectors = onnx.embed(batch)
        assert vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
        cosines = (vectors * reference[[TEXTS.index(t) for t in batch]]).sum(axis=1)
        assert cosines.min() > 0.999, cosines


def test_unknown_model_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        resolve_model_path(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError):
        build_embedder(EmbedderConfig(model=str(tmp_path / "nope")))


def test_cache_embeds_each_text_once(fake_embedder: FakeEmbedder) -> None:
    cached = CachedEmbedder(fake_embedder, max_items=10)
    first = cached.embed(["math", "code", "math"])
    second = cached.embed(["code", "poem"])
    assert fake_embedder.texts == ["math", "code", "poem"]
    assert np.array_equal(first[1], second[0])
    assert np.array_equal(first[0], first[2])
    assert (cached.hits, cached.misses) == (1, 3)  # a text repeated within a call is one miss
    assert cached.id == "fake"
    assert cached.dim == fake_embedder.dim


def test_cache_evicts_least_recently_used(fake_embedder: FakeEmbedder) -> None:
    cached = CachedEmbedder(fake_embedder, max_items=2)
    cached.embed(["math"])
    cached.embed(["code"])
    cached.embed(["math"])  # now "code" is the least recently used
    cached.embed(["poem"])
    assert len(cached) == 2
    fake_embedder.texts.clear()
    cached.embed(["math", "code"])
    assert fake_embedder.texts == ["code"]


def test_cache_returns_copies(fake_embedder: FakeEmbedder) -> None:
    cached = CachedEmbedder(fake_embedder)
    vectors = cached.embed(["math"])
    vectors[:] = 0
    assert cached.embed(["math"])[0].any()
    assert cached.embed([]).shape == (0, fake_embedder.dim)


def test_build_embedder_wraps_in_a_cache_unless_disabled() -> None:
    cached = build_embedder(EmbedderConfig())
    assert isinstance(cached, CachedEmbedder) and isinstance(cached.inner, BatchingEmbedder)
    plain = build_embedder(EmbedderConfig(cache_size=0))
    assert isinstance(plain, BatchingEmbedder)
    assert isinstance(plain.inner, SentenceTransformerEmbedder)
    batched = build_embedder(
        EmbedderConfig(backend="onnx", cache_size=0, onnx_file=Path("/x.onnx"))
    )
    assert isinstance(batched, BatchingEmbedder)
    onnx = batched.inner
    assert isinstance(onnx, OnnxEmbedder)
    assert onnx.onnx_file == Path("/x.onnx")  # nothing exported until first use


def test_build_router_by_kind(fake_embedder: FakeEmbedder) -> None:
    router = build_router(RouterConfig(kind="knn", k=3), fake_embedder)
    assert isinstance(router, KnnRouter)
    assert router.name == "knn"


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "bert"},
        {"temperature": 0},
        {"min_confidence": 1.5},
        {"categories": {"math": [""]}},
        {"embedder": {"backend": "tf"}},
        {"embedder": {"modle": "x"}},
        {"treshold": 0.5},
    ],
)
def test_router_config_rejects(bad: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        RouterConfig.model_validate(bad)
