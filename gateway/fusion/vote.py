"""`vote`: the weighted majority of the candidates' normalised final answers.

Each candidate's final answer (`routers.final_answer`: a letter, a number, a short answer) gets
the router's weight of its expert; the answer with the largest total wins, ties going to the
best-ranked expert, and the best-ranked expert holding it answers (its text, whole). Candidates
without a recognisable final answer do not vote; when none has one, the best-ranked answers.
The rule is `routers.fusion_rule.tally`, the one `coe eval --fusion vote` applies offline.
"""

from __future__ import annotations

from collections.abc import Sequence

from experts.chat import ChatRequest
from gateway.fusion.base import Calls, Candidate, Fused, FusionKind, FusionPlan, Strategy
from routers.final_answer import final_answer
from routers.fusion_rule import tally

__all__ = ["Vote", "vote"]


def vote(plan: FusionPlan, candidates: Sequence[Candidate]) -> tuple[Candidate, int]:
    """(the winning candidate, how many candidates agree with it)."""
    ranked = sorted(candidates, key=lambda c: plan.rank(c.expert))
    answers = [final_answer(c.result.text) for c in ranked]
    winner, agreeing = tally(answers, [plan.weight(c.expert) for c in ranked])
    return ranked[winner], agreeing


class Vote(Strategy):
    kind = FusionKind.VOTE

    async def fuse(self, plan: FusionPlan, request: ChatRequest, calls: Calls) -> Fused:
        candidates = await calls.gather(plan.experts, request)
        if len(candidates) == 1:
            return self.alone(candidates[0])
        winner, agreeing = vote(plan, candidates)
        used = tuple(c.expert for c in candidates)
        reason = f"{agreeing} of {len(candidates)} candidates agree"
        notes = {"agreeing": float(agreeing)}
        return Fused(self.kind, used, winner.expert, reason, winner.result, notes=notes)
