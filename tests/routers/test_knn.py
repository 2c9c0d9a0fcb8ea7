"""KnnRouter: exact votes on a fake embedder, real routing on MiniLM."""

from __future__ import annotations

import math

import pytest

from routers.base import Router
from routers.config import RouterConfig
from routers.embedder import Embedder
from routers.factory import build_router
from routers.knn import KnnRouter
from tests.fakes import FakeEmbedder
from tests.routers.conftest import (
    CATEGORIES,
    HELD_OUT,
    MIN_SIMILARITY,
    OUT_OF_DOMAIN,
    expert,
    experts,
    table,
)

FAKE_CATEGORIES = {"math": ["math", "math integral"], "code": ["code"]}
FAKE_TABLE = table(expert("m", "math"), expert("c", "code"))


def real_router(minilm: Embedder, **overrides: object) -> Router:
    config = {"kind": "knn", "categories": CATEGORIES, "min_similarity": MIN_SIMILARITY}
    return build_router(RouterConfig.model_validate(config | overrides), minilm)


def test_k_nearest_vote_with_softmax_weights(fake_embedder: FakeEmbedder) -> None:
    config = RouterConfig(kind="knn", k=3, temperature=0.5, categories=FAKE_CATEGORIES)
    decision = KnnRouter(fake_embedder, config).route("math code", FAKE_TABLE)
    s = 1 / math.sqrt(2)  # cos to "math" and to "code"; 0.5 to "math integral"
    weights = [math.exp(s / 0.5), math.exp(s / 0.5), math.exp(0.5 / 0.5)]
    assert decision.router == "knn"
    assert decision.category == "math"
    assert decision.confidence == pytest.approx((weights[1] + weights[2]) / sum(weights))
    assert decision.top_similarity == pytest.approx(s)
    assert [e.name for e in decision.experts] == ["m", "c"]


def test_categories_outside_the_k_nearest_get_zero(fake_embedder: FakeEmbedder) -> None:
    config = RouterConfig(kind="knn", k=1, categories=FAKE_CATEGORIES)
    decision = KnnRouter(fake_embedder, config).route("integral", FAKE_TABLE)
    assert decision.categories == (("math", 1.0), ("code", 0.0))


def test_similarity_ties_break_by_label_order(fake_embedder: FakeEmbedder) -> None:
    config = RouterConfig(kind="knn", k=2, categories=FAKE_CATEGORIES)
    decision = KnnRouter(fake_embedder, config).route("math code", FAKE_TABLE)
    # the two nearest, "code" and "math", tie at cos 0.707: half each, "code" first by name
    assert decision.categories == (("code", 0.5), ("math", 0.5))


def test_k_larger_than_the_exemplars(fake_embedder: FakeEmbedder) -> None:
    config = RouterConfig(kind="knn", k=50, categories=FAKE_CATEGORIES)
    decision = KnnRouter(fake_embedder, config).route("python code", FAKE_TABLE)
    assert decision.category == "code"
    assert sum(p for _, p in decision.categories) == pytest.approx(1.0)


@pytest.mark.parametrize(("query", "category"), HELD_OUT)
def test_held_out_queries_route_to_their_category(
    minilm: Embedder, query: str, category: str
) -> None:
    decision = real_router(minilm).route(query, experts())
    assert decision.category == category, decision.categories
    assert not decision.fallback


@pytest.mark.parametrize("query", OUT_OF_DOMAIN)
def test_gibberish_falls_back(minilm: Embedder, query: str) -> None:
    decision = real_router(minilm, fallback="generalist").route(query, experts())
    assert decision.fallback, (decision.top_similarity, decision.categories)
    assert decision.experts[0].name == "generalist"


def test_low_confidence_falls_back(minilm: Embedder) -> None:
    router = real_router(minilm, min_confidence=0.95, fallback="generalist")
    decision = router.route("Write a Python function that prints a poem", experts())
    assert decision.fallback
    assert decision.reason.startswith("low confidence")
    assert [e.name for e in decision.experts][:1] == ["generalist"]


def test_new_expert_routable_then_removed(minilm: Embedder) -> None:
    router = real_router(minilm)
    lawyer = expert(
        "lawyer",
        exemplars=[
            "Can my landlord evict me without notice?",
            "How do I file a small claims lawsuit?",
            "Is a verbal contract legally binding?",
        ],
    )
    query = "Can my employer fire me for filing a complaint? Is that legal?"
    assert router.route(query, experts(7, lawyer)).experts[0].name == "lawyer"
    assert "lawyer" not in [e.name for e in router.route(query, experts(8)).experts]


def test_deterministic(minilm: Embedder) -> None:
    router = real_router(minilm)
    first = [router.route(q, experts()) for q, _ in HELD_OUT]
    again = [real_router(minilm).route(q, experts()) for q, _ in HELD_OUT]
    for a, b in zip(first, again, strict=True):
        assert (a.experts, a.categories, a.fallback) == (b.experts, b.categories, b.fallback)
