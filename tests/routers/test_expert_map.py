"""The category -> expert map and the abstention policy, with exact expectations."""

from __future__ import annotations

import pytest

from routers.base import ScoredExpert
from routers.expert_map import ExpertMap, served_categories, sort_categories
from tests.routers.conftest import expert, table

PROBS = sort_categories({"code": 0.3, "math": 0.6, "poem": 0.1})


def names(experts: tuple[ScoredExpert, ...]) -> list[str]:
    return [e.name for e in experts]


def test_served_categories() -> None:
    assert served_categories(expert("a", "math", "*", "code")) == ("math", "code")
    assert served_categories(expert("b", exemplars=["hi"])) == ("b",)
    assert served_categories(expert("c", "*", exemplars=["hi"])) == ("c",)
    assert served_categories(expert("d", "*")) == ()
    assert served_categories(expert("e")) == ()


def test_sort_categories_desc_then_by_label() -> None:
    assert sort_categories({"b": 0.25, "a": 0.25, "c": 0.5}) == (
        ("c", 0.5),
        ("a", 0.25),
        ("b", 0.25),
    )


def test_order_top_category_by_cost_then_name_then_generalists_then_next_categories() -> None:
    experts = table(
        expert("general-b", "*", cost=0.5),
        expert("general-a", "*", cost=0.5),
        expert("poet", "poem"),
        expert("coder", "code", cost=0.1),
        expert("math-big", "math", cost=5),
        expert("math-z", "math", cost=1),
        expert("math-a", "math", cost=1),
        expert("fb", "legal"),
    )
    decision = ExpertMap(fallback="fb").decide(PROBS, experts, top_similarity=0.8)
    assert names(decision.experts) == [
        "math-a", "math-z", "math-big", "general-a", "general-b", "coder", "poet", "fb",
    ]  # fmt: skip
    assert [e.score for e in decision.experts] == [0.6, 0.6, 0.6, 0.6, 0.6, 0.3, 0.1, 0.0]
    assert not decision.fallback
    assert decision.category == "math"
    assert decision.confidence == 0.6
    assert decision.top_similarity == 0.8


def test_expert_serving_several_categories_is_listed_once_at_its_best() -> None:
    experts = table(expert("both", "poem", "code"), expert("m", "math"))
    decision = ExpertMap().decide(PROBS, experts)
    assert decision.experts == (ScoredExpert("m", 0.6), ScoredExpert("both", 0.3))


def test_low_confidence_puts_the_fallback_first_then_generalists() -> None:
    experts = table(expert("m", "math"), expert("c", "code"), expert("g", "*"), expert("fb", "*"))
    decision = ExpertMap(min_confidence=0.7, fallback="fb").decide(PROBS, experts)
    assert decision.fallback
    assert "low confidence" in decision.reason
    assert names(decision.experts) == ["fb", "g", "m", "c"]
    assert decision.experts[0].score == 0.6  # a generalist fallback is reached via the top category


def test_out_of_domain_falls_back() -> None:
    experts = table(expert("m", "math"), expert("fb", "other"))
    policy = ExpertMap(min_similarity=0.3, fallback="fb")
    decision = policy.decide(PROBS, experts, top_similarity=0.1)
    assert decision.fallback
    assert decision.reason.startswith("out of domain")
    assert names(decision.experts) == ["fb", "m"]
    assert not policy.decide(PROBS, experts, top_similarity=0.3).fallback


def test_no_expert_for_the_top_category_falls_back() -> None:
    experts = table(expert("c", "code"), expert("fb", "poem"))
    decision = ExpertMap(fallback="fb").decide(PROBS, experts)
    assert decision.fallback
    assert decision.reason == "no expert serves category 'math' and there is no generalist ('*')"
    assert names(decision.experts) == ["fb", "c"]


def test_a_generalist_serves_an_unlisted_top_category_without_abstaining() -> None:
    experts = table(expert("c", "code"), expert("g", "*"), expert("fb", "poem"))
    decision = ExpertMap(fallback="fb").decide(PROBS, experts)
    assert not decision.fallback
    assert names(decision.experts) == ["g", "c", "fb"]


def test_missing_fallback_is_reported_and_generalists_lead() -> None:
    experts = table(expert("c", "code"), expert("g", "*"))
    decision = ExpertMap(min_confidence=0.9, fallback="gone").decide(PROBS, experts)
    assert decision.fallback
    assert "fallback 'gone' unavailable" in decision.reason
    assert names(decision.experts) == ["g", "c"]


@pytest.mark.parametrize("probs", [PROBS, ()])
def test_empty_table_gives_no_experts(probs: tuple[tuple[str, float], ...]) -> None:
    decision = ExpertMap(fallback="fb").decide(probs, table())
    assert decision.experts == ()
    assert decision.reason == "no experts"


def test_no_categories_routes_to_fallback_and_generalists() -> None:
    decision = ExpertMap(fallback="fb").decide((), table(expert("g", "*"), expert("fb", "x")))
    assert decision.fallback
    assert names(decision.experts) == ["fb", "g"]
    assert decision.category is None


def test_disabled_experts_are_skipped() -> None:
    off = expert("m-off", "math").model_copy(update={"enabled": False})
    decision = ExpertMap().decide(PROBS, table(off, expert("m", "math")))
    assert names(decision.experts) == ["m"]
