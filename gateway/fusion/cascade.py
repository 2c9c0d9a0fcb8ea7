"""`cascade`: the cheapest experts first; escalate to the next only when they disagree.

The plan's experts are ordered by cost (cheapest first, router rank breaking ties). The first
`cascade_first` are called together; when the router is confident, the first alone. If their
final answers agree (`answers.final_answer`; all of them, or the only one), that answer is
returned. Otherwise the next expert by cost is called and the vote over every answer so far
decides (ties to the router's ranking). Only the experts actually called count as used.
"""

from __future__ import annotations

from experts.chat import ChatRequest
from gateway.fusion.answers import final_answer
from gateway.fusion.base import Calls, Candidate, Fused, FusionKind, FusionPlan, Strategy
from gateway.fusion.vote import tally

__all__ = ["Cascade"]


def _agree(candidates: list[Candidate]) -> bool:
    answers = {final_answer(c.result.text) for c in candidates}
    return len(answers) == 1 and None not in answers


class Cascade(Strategy):
    kind = FusionKind.CASCADE

    async def fuse(self, plan: FusionPlan, request: ChatRequest, calls: Calls) -> Fused:
        by_cost = sorted(
            plan.experts,
            key=lambda e: (plan.costs[plan.rank(e)] if plan.costs else 0.0, plan.rank(e)),
        )
        first = 1 if plan.confident else max(1, plan.cascade_first)
        answered = await calls.gather(by_cost[:first], request)
        called = list(by_cost[:first])
        rest = by_cost[first:]
        while not _agree(answered) and rest:
            nxt = rest.pop(0)
            called.append(nxt)
            try:
                answered += await calls.gather([nxt], request)
            except Exception:
                continue
        if len(answered) == 1:
            why = "router confident" if plan.confident else "the cheapest answer stood alone"
            return self.alone(answered[0], why)
        winner, agreeing = tally(plan, answered)
        used = tuple(c.expert for c in answered)
        reason = f"{agreeing} of {len(answered)} agree; {len(called)} of {len(plan.experts)} called"
        notes = {"called": float(len(called))}
        return Fused(self.kind, used, winner.expert, reason, winner.result, notes=notes)
