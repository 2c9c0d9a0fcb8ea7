"""The fusion strategies and answer normalisation on canned answers (`tests.fakes.FakeCalls`)."""

from __future__ import annotations

import pytest

from experts.errors import UpstreamError
from gateway.fusion import STRATEGIES
from gateway.fusion.base import FusionKind, FusionPlan
from routers.final_answer import final_answer
from tests.fakes import FakeCalls, ask


def plan(kind: FusionKind, *experts: str, **fields: object) -> FusionPlan:
    weights = tuple(1.0 for _ in experts)
    return FusionPlan(kind, experts, weights, 10.0, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Step by step... so the answer is (C).", "C"),
        ("Answer: B", "B"),
        ("(D)", "D"),
        ("the answer is a cat", "the answer is a cat"),
        ("She has 1,250.50 dollars left.", "1250.5"),
        ("84", "84"),
        ("Paris!", "paris"),
        ("a " * 40, None),
    ],
)
def test_final_answers(text: str, answer: str | None) -> None:
    assert final_answer(text) == answer


async def test_vote_weights_and_ties() -> None:
    calls = FakeCalls({"a": "It is (A).", "b": "It is (B).", "c": "Answer: B"})
    weighted = FusionPlan(FusionKind.VOTE, ("a", "b", "c"), (0.9, 0.3, 0.3), 10.0)
    fused = await STRATEGIES[FusionKind.VOTE].fuse(weighted, ask("q"), calls)
    assert (fused.by, fused.strategy) == ("a", FusionKind.VOTE)  # 0.9 beats 0.3 + 0.3
    tie = await STRATEGIES[FusionKind.VOTE].fuse(
        plan(FusionKind.VOTE, "b", "a"), ask("q"), FakeCalls({"a": "(A)", "b": "(B)"})
    )
    assert tie.by == "b"  # a tie goes to the best-ranked expert


async def test_one_survivor_is_answered_alone() -> None:
    calls = FakeCalls({"a": UpstreamError("down", expert="a"), "b": "(B)"})
    for kind in (FusionKind.VOTE, FusionKind.CONSENSUS):
        fused = await STRATEGIES[kind].fuse(plan(kind, "a", "b"), ask("q"), calls)
        assert (fused.strategy, fused.used) == (FusionKind.NONE, ("b",))


async def test_no_survivor_raises_the_failure() -> None:
    calls = FakeCalls({"a": UpstreamError("down", expert="a")})
    with pytest.raises(UpstreamError):
        await STRATEGIES[FusionKind.VOTE].fuse(plan(FusionKind.VOTE, "a"), ask("q"), calls)


async def test_judge_falls_back_to_the_best_ranked_on_an_unreadable_verdict() -> None:
    calls = FakeCalls({"a": "one", "b": "two", "j": "I cannot decide"})
    fused = await STRATEGIES[FusionKind.JUDGE].fuse(
        plan(FusionKind.JUDGE, "a", "b", judge="j"), ask("q"), calls
    )
    assert fused.by == "a" and "names no candidate" in fused.reason


async def test_aggregate_falls_back_when_the_aggregator_fails() -> None:
    calls = FakeCalls({"a": "one", "b": "two", "g": UpstreamError("down", expert="g")})
    fused = await STRATEGIES[FusionKind.AGGREGATE].fuse(
        plan(FusionKind.AGGREGATE, "a", "b", aggregator="g"), ask("q"), calls
    )
    assert fused.by == "a" and fused.used == ("a", "b") and "failed" in fused.reason


async def test_cascade_asks_the_cheapest_alone_when_the_router_is_sure() -> None:
    calls = FakeCalls({"dear": "(A)", "cheap": "(B)"})
    sure = plan(FusionKind.CASCADE, "dear", "cheap", costs=(9.0, 1.0), confident=True)
    fused = await STRATEGIES[FusionKind.CASCADE].fuse(sure, ask("q"), calls)
    assert calls.called == ["cheap"] and fused.strategy is FusionKind.NONE
