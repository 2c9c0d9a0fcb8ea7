"""CentroidRouter: exact behaviour on a fake embedder, real routing on MiniLM."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import pytest

from routers.base import Router
from routers.centroid import CentroidRouter
from routers.config import RouterConfig
from routers.embedder import Embedder
from routers.factory import build_router
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


def real_router(minilm: Embedder, **overrides: object) -> Router:
    config = {"kind": "centroid", "categories": CATEGORIES, "min_similarity": MIN_SIMILARITY}
    return build_router(RouterConfig.model_validate(config | overrides), minilm)


# --- exact behaviour on the fake embedder ------------------------------------------------


def fake_router(fake: FakeEmbedder, **overrides: object) -> CentroidRouter:
    config = RouterConfig.model_validate(
        {"categories": {"math": ["math integral"], "code": ["code python"]}} | overrides
    )
    return CentroidRouter(fake, config)


def test_probabilities_are_softmax_of_centroid_cosines(fake_embedder: FakeEmbedder) -> None:
    router = fake_router(fake_embedder, temperature=0.5)
    decision = router.route("math", table(expert("m", "math"), expert("c", "code")))
    cos_math = 1 / math.sqrt(2)
    expected_math = 1 / (1 + math.exp(-cos_math / 0.5))
    assert decision.category == "math"
    assert decision.confidence == pytest.approx(expected_math)
    assert dict(decision.categories)["code"] == pytest.approx(1 - expected_math)
    assert decision.top_similarity == pytest.approx(cos_math)
    assert [e.name for e in decision.experts] == ["m", "c"]
    assert decision.router == "centroid"
    assert decision.latency_ms > 0


def test_unknown_words_fall_back(fake_embedder: FakeEmbedder) -> None:
    router = fake_router(fake_embedder, min_similarity=0.1, fallback="fb")
    decision = router.route("hello there", table(expert("m", "math"), expert("fb", "x")))
    assert decision.fallback
    assert decision.top_similarity == 0.0
    assert decision.experts[0].name == "fb"


def test_expert_exemplars_define_its_category_on_the_next_request(
    fake_embedder: FakeEmbedder,
) -> None:
    router = fake_router(fake_embedder)
    before = table(expert("m", "math"), expert("c", "code"), revision=1)
    assert router.route("a poem with rhyme", before).category != "poet"
    poet = expert("poet", exemplars=["poem rhyme", "story"])
    after = table(*before.experts, poet, revision=2)
    decision = router.route("a poem with rhyme", after)
    assert decision.category == "poet"
    assert decision.experts[0].name == "poet"
    assert router.categories(after) == ("code", "math", "poet")


def test_exemplars_are_embedded_once_across_revisions(fake_embedder: FakeEmbedder) -> None:
    router = fake_router(fake_embedder)
    base = (expert("m", "math"), expert("c", "code"))
    router.route("q1", table(*base, revision=1))
    router.route("q2", table(*base, revision=1))
    router.route("q3", table(*base, expert("p", exemplars=["poem"]), revision=2))
    router.route("q4", table(*base, expert("p", exemplars=["poem"], cost=3), revision=3))
    assert fake_embedder.texts == ["code python", "math integral", "q1", "q2", "poem", "q3", "q4"]


def test_concurrent_routes_build_the_index_once(fake_embedder: FakeEmbedder) -> None:
    router = fake_router(fake_embedder)
    experts_ = table(expert("m", "math"), expert("c", "code"), revision=4)
    with ThreadPoolExecutor(max_workers=4) as pool:
        decisions = list(pool.map(lambda q: router.route(q, experts_), ["python code"] * 16))
    assert {d.experts[0].name for d in decisions} == {"c"}
    assert router.index_cache.builds == 1
    assert fake_embedder.texts.count("math integral") == 1


def test_no_exemplars_at_all(fake_embedder: FakeEmbedder) -> None:
    router = CentroidRouter(fake_embedder, RouterConfig(fallback="g"))
    decision = router.route("math", table(expert("m", "math"), expert("g", "*")))
    assert decision.categories == ()
    assert decision.fallback
    assert [e.name for e in decision.experts] == ["g"]


# --- real MiniLM --------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "category"), HELD_OUT)
def test_held_out_queries_route_to_their_category(
    minilm: Embedder, query: str, category: str
) -> None:
    decision = real_router(minilm).route(query, experts())
    assert decision.category == category, decision.categories
    assert not decision.fallback
    assert decision.experts[0].name == {"math": "mathstral", "code": "coder"}.get(
        category, "writer"
    )
    assert decision.experts[1].name == "generalist"  # then the generalist, before other categories


@pytest.mark.parametrize("query", OUT_OF_DOMAIN)
def test_gibberish_falls_back(minilm: Embedder, query: str) -> None:
    decision = real_router(minilm, fallback="generalist").route(query, experts())
    assert decision.fallback, (decision.top_similarity, decision.categories)
    assert decision.experts[0].name == "generalist"


def test_new_expert_becomes_routable_and_removal_stops_it(minilm: Embedder) -> None:
    router = real_router(minilm)
    chef = expert(
        "chef",
        exemplars=[
            "How long should I boil an egg?",
            "Give me a recipe for tomato soup.",
            "What spices go well with roast chicken?",
        ],
    )
    query = "How do I make fluffy pancakes for breakfast?"
    assert router.route(query, experts(1)).experts[0].name != "chef"
    with_chef = router.route(query, experts(2, chef))
    assert with_chef.category == "chef"
    assert with_chef.experts[0].name == "chef"
    assert router.route("Solve 2x = 10 for x.", experts(2, chef)).category == "math"
    without = router.route(query, experts(3))
    assert "chef" not in [e.name for e in without.experts]
    assert "chef" not in router.categories(experts(3))


def test_deterministic(minilm_raw: Embedder) -> None:
    """Two routers, no cache: embeddings and decisions are computed twice and agree."""
    first = [real_router(minilm_raw).route(q, experts()) for q, _ in HELD_OUT]
    second = [real_router(minilm_raw).route(q, experts()) for q, _ in HELD_OUT]
    for a, b in zip(first, second, strict=True):
        assert (a.experts, a.categories, a.fallback) == (b.experts, b.categories, b.fallback)
