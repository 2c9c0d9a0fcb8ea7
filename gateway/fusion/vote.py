"""`vote`: the weighted majority of the candidates' normalised final answers.

Each candidate's final answer (`answers.final_answer`: a letter, a number, a short answer) gets
the router's weight of its expert; the answer with the largest total wins, ties going to the
best-ranked expert, and the best-ranked expert holding it answers (its text, whole). Candidates
without a recognisable final answer do not vote; when none has one, the best-ranked answers.
"""

from __future__ import annotations

from collections.abc import Sequence

from experts.chat import ChatRequest
from gateway.fusion.answers import final_answer
from gateway.fusion.base import Calls, Candidate, Fused, FusionKind, FusionPlan, Strategy

__all__ = ["Vote", "tally"]


def tally(plan: FusionPlan, candidates: Sequence[Candidate]) -> tuple[Candidate, int]:
    """(the winning candidate, how many candidates agree with it)."""
    ranked = sorted(candidates, key=lambda c: plan.rank(c.expert))
    answers = {c.expert: final_answer(c.result.text) for c in ranked}
    totals: dict[str, float] = {}
    for candidate in ranked:
        answer = answers[candidate.expert]
        if answer is not None:
            totals[answer] = totals.get(answer, 0.0) + max(plan.weight(candidate.expert), 1e-9)
    if not totals:
        return ranked[0], 1
    first_holder = {a: next(c for c in ranked if answers[c.expert] == a) for a in totals}
    best = max(totals, key=lambda a: (totals[a], -plan.rank(first_holder[a].expert)))
    return first_holder[best], sum(1 for a in answers.values() if a == best)


class Vote(Strategy):
    kind = FusionKind.VOTE

    async def fuse(self, plan: FusionPlan, request: ChatRequest, calls: Calls) -> Fused:
        candidates = await calls.gather(plan.experts, request)
        if len(candidates) == 1:
            return self.alone(candidates[0])
        winner, agreeing = tally(plan, candidates)
        used = tuple(c.expert for c in candidates)
        reason = f"{agreeing} of {len(candidates)} candidates agree"
        notes = {"agreeing": float(agreeing)}
        return Fused(self.kind, used, winner.expert, reason, winner.result, notes=notes)
