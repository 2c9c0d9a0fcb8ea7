"""How answers are fused and how many experts a query gets: pure rules that the gateway applies
to live answers and `coe eval --fusion` applies to logged ones, so both decide alike.

    tally(answers, weights)        the weighted majority of normalised final answers; the index
                                   (in rank order) of the candidate that answers, and how many agree
    settled(answers)               a cascade may stop: the leading answer is held by two or more
                                   and by more than any other (one lone answer counts when only
                                   one expert was asked)
    cascade_order(costs)           candidates cheapest first, the router's rank breaking ties
    FusionRule                     an artifact's adaptive fan-out: the strategy and the cap on k;
                                   k itself comes from the artifact's `Selection` (probability
                                   mass over the ranked experts, `routers.selection.adaptive_top_k`)

Answers are normalised with `routers.final_answer.final_answer` before they get here; `None` is a
candidate with no recognisable final answer, which does not vote.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FusionRule", "RuleStrategy", "cascade_order", "settled", "tally"]


class RuleStrategy(enum.StrEnum):
    """The strategies a trained rule can prescribe (those decided from final answers alone)."""

    VOTE = "vote"
    CASCADE = "cascade"


def tally(answers: Sequence[str | None], weights: Sequence[float]) -> tuple[int, int]:
    """(index of the answering candidate, how many candidates hold its answer).

    Candidates are in rank order (best first). Each answer collects the weights of the
    candidates holding it (a weight below 1e-9 counts as 1e-9); the largest total wins, ties go
    to the answer held by the better-ranked candidate, and the best-ranked holder answers. When
    no candidate has an answer, the first answers (agreeing: 1)."""
    totals: dict[str, float] = {}
    first: dict[str, int] = {}
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        totals[answer] = totals.get(answer, 0.0) + max(float(weights[i]), 1e-9)
        first.setdefault(answer, i)
    if not totals:
        return 0, 1
    best = max(totals, key=lambda a: (totals[a], -first[a]))
    return first[best], sum(1 for a in answers if a == best)


def settled(answers: Sequence[str | None]) -> bool:
    """Whether a cascade can stop with these answers (module docstring)."""
    if len(answers) == 1:
        return answers[0] is not None
    counts = Counter(a for a in answers if a is not None).most_common(2)
    if not counts:
        return False
    lead = counts[0][1]
    second = counts[1][1] if len(counts) > 1 else 0
    return lead >= 2 and lead > second


def cascade_order(costs: Sequence[float]) -> list[int]:
    """Candidate indices (given in rank order) cheapest first; rank breaks ties."""
    return sorted(range(len(costs)), key=lambda i: (costs[i], i))


@dataclass(frozen=True)
class FusionRule:
    """A trained fan-out rule (`coe train --fusion adaptive`), recorded in the artifact.

    The router ranks the experts and its `Selection` (`top_k_mass`, `top_k_temperature`) says
    how many of them a query needs; this rule caps that number and names the strategy that
    fuses their answers. k = 1 is plain routing: no fusion cost when the router is sure.
    """

    strategy: RuleStrategy = RuleStrategy.VOTE
    max_k: int = 5
    cascade_first: int = 2

    def __post_init__(self) -> None:
        if self.max_k < 1 or self.cascade_first < 1:
            raise ValueError("max_k and cascade_first must be at least 1")

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy.value,
            "max_k": self.max_k,
            "cascade_first": self.cascade_first,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FusionRule:
        return cls(
            strategy=RuleStrategy(str(data.get("strategy", "vote"))),
            max_k=int(data.get("max_k", 5)),
            cascade_first=int(data.get("cascade_first", 2)),
        )
