"""`judge`: a judge expert reads the question and the numbered candidates and names the best.

The judge (`fusion.judge` in the config) gets one short request: the user's question, then each
candidate answer under its number, and the instruction to reply with the number only (greedy,
at most 8 tokens). The first number in its reply picks the answer; an unreadable reply, or a
judge that fails, leaves the best-ranked candidate's answer (said in the reason).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from experts.chat import ChatRequest, Message, Sampling
from experts.errors import ExpertError
from gateway.fusion.base import Calls, Candidate, Fused, FusionKind, FusionPlan, Strategy

__all__ = ["Judge", "judge_request"]

_INSTRUCTION = (
    "You are a strict judge. Read the question and the numbered candidate answers, then reply "
    "with the number of the best answer (correct, complete, clear) and nothing else."
)


def judge_request(request: ChatRequest, candidates: Sequence[Candidate]) -> ChatRequest:
    """The judge's request: the question and the numbered candidates."""
    parts = [f"Question:\n{request.routing_query()}", ""]
    for number, candidate in enumerate(candidates, start=1):
        parts += [f"Answer {number}:\n{candidate.result.text}", ""]
    parts.append(f"Which answer is best? Reply with a number from 1 to {len(candidates)}.")
    return replace(
        request,
        messages=(Message("system", _INSTRUCTION), Message("user", "\n".join(parts))),
        sampling=Sampling(temperature=0.0, max_tokens=8),
        extra={},
        stream=False,
    )


class Judge(Strategy):
    kind = FusionKind.JUDGE

    async def fuse(self, plan: FusionPlan, request: ChatRequest, calls: Calls) -> Fused:
        assert plan.judge is not None, "a judge plan names its judge"
        candidates = await calls.gather(plan.experts, request)
        if len(candidates) == 1:
            return self.alone(candidates[0])
        used = (*(c.expert for c in candidates), plan.judge)
        try:
            verdict = await calls.call(plan.judge, judge_request(request, candidates))
        except ExpertError as exc:
            reason = f"judge {plan.judge!r} failed ({exc.message}); best-ranked kept"
            return Fused(self.kind, used, candidates[0].expert, reason, candidates[0].result)
        found = re.search(r"\d+", verdict.text)
        choice = int(found.group()) if found else 0
        if not 1 <= choice <= len(candidates):
            reason = f"judge's reply {verdict.text[:40]!r} names no candidate; best-ranked kept"
            return Fused(self.kind, used, candidates[0].expert, reason, candidates[0].result)
        chosen = candidates[choice - 1]
        reason = f"judge {plan.judge!r} chose answer {choice} of {len(candidates)}"
        return Fused(self.kind, used, chosen.expert, reason, chosen.result)
