"""`aggregate`: an aggregator expert synthesises the candidates into one answer
(Mixture-of-Agents: Wang et al. 2024, "Mixture-of-Agents Enhances Large Language Model
Capabilities", arXiv:2406.04692, its aggregate-and-synthesise prompt).

The aggregator (`fusion.aggregator` in the config) gets the conversation with a system message
holding the candidates' answers; its answer is the request's, streamed token by token when the
client streams. A failed aggregator leaves the best-ranked candidate's answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from experts.chat import ChatRequest, Message
from experts.errors import ExpertError
from gateway.fusion.base import Calls, Candidate, Fused, FusionKind, FusionPlan, Strategy

__all__ = ["Aggregate", "aggregator_request"]

_SYNTHESISE = (
    "You have been provided with a set of responses from various models to the latest user "
    "query. Your task is to synthesize these responses into a single, high-quality response. "
    "It is crucial to critically evaluate the information provided in these responses, "
    "recognizing that some of it may be biased or incorrect. Your response should not simply "
    "replicate the given answers but should offer a refined, accurate, and comprehensive reply "
    "to the instruction.\n\nResponses from models:"
)


def aggregator_request(request: ChatRequest, candidates: Sequence[Candidate]) -> ChatRequest:
    """The conversation with the candidates' answers in a leading system message."""
    answers = "\n".join(f"{i}. {c.result.text}" for i, c in enumerate(candidates, start=1))
    system = Message("system", f"{_SYNTHESISE}\n{answers}")
    others = tuple(m for m in request.messages if m.role not in ("system", "developer"))
    return replace(request, messages=(system, *others), extra={})


class Aggregate(Strategy):
    kind = FusionKind.AGGREGATE

    async def fuse(self, plan: FusionPlan, request: ChatRequest, calls: Calls) -> Fused:
        assert plan.aggregator is not None, "an aggregate plan names its aggregator"
        candidates = await calls.gather(plan.experts, request)
        if len(candidates) == 1:
            return self.alone(candidates[0])
        used = (*(c.expert for c in candidates), plan.aggregator)
        synthesis = aggregator_request(request, candidates)
        reason = f"{plan.aggregator!r} synthesised {len(candidates)} answers"
        if request.stream:
            stream = calls.stream(plan.aggregator, synthesis)
            return Fused(self.kind, used, plan.aggregator, reason, stream=stream)
        try:
            result = await calls.call(plan.aggregator, synthesis)
        except ExpertError as exc:
            reason = f"aggregator {plan.aggregator!r} failed ({exc.message}); best-ranked kept"
            first = candidates[0]
            return Fused(self.kind, used[:-1], first.expert, reason, first.result)
        return Fused(self.kind, used, plan.aggregator, reason, result)
