"""`cascade`: the cheapest experts first; escalate to the next only while they disagree.

The plan's experts are ordered by cost (cheapest first, router rank breaking ties:
`routers.fusion_rule.cascade_order`). The first `cascade_first` are called together; when the
router is confident, the first alone. The cascade stops as soon as the answers so far are
`settled` (the leading final answer held by two or more candidates and by more than any other;
a lone answer when one was asked); otherwise the next expert by cost is called. The vote over
every answer so far decides (ties to the router's ranking). Only the experts actually called
count as used. `coe eval --fusion cascade` applies the same rules to logged answers.
"""

from __future__ import annotations

from experts.chat import ChatRequest
from gateway.fusion.base import Calls, Fused, FusionKind, FusionPlan, Strategy
from gateway.fusion.vote import vote
from routers.final_answer import final_answer
from routers.fusion_rule import cascade_order, settled

__all__ = ["Cascade"]


class Cascade(Strategy):
    kind = FusionKind.CASCADE

    async def fuse(self, plan: FusionPlan, request: ChatRequest, calls: Calls) -> Fused:
        costs = plan.costs or tuple(0.0 for _ in plan.experts)
        by_cost = [plan.experts[i] for i in cascade_order(costs)]
        first = 1 if plan.confident else max(1, plan.cascade_first)
        answered = await calls.gather(by_cost[:first], request)
        called = list(by_cost[:first])
        rest = by_cost[first:]
        while not settled([final_answer(c.result.text) for c in answered]) and rest:
            nxt = rest.pop(0)
            called.append(nxt)
            try:
                answered += await calls.gather([nxt], request)
            except Exception:
                continue
        if len(answered) == 1:
            why = "router confident" if plan.confident else "the cheapest answer stood alone"
            return self.alone(answered[0], why)
        winner, agreeing = vote(plan, answered)
        used = tuple(c.expert for c in answered)
        reason = f"{agreeing} of {len(answered)} agree; {len(called)} of {len(plan.experts)} called"
        notes = {"called": float(len(called))}
        return Fused(self.kind, used, winner.expert, reason, winner.result, notes=notes)
