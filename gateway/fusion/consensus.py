"""`consensus`: the free-text answer most similar to the others, with no extra model call.

Every candidate's text is embedded with the router's embedder; the candidate with the highest
mean cosine similarity to the others answers (ties to the best-ranked expert). It suits open
questions where answers cannot be normalised to vote on (explanations, summaries, code).
"""

from __future__ import annotations

import numpy as np

from experts.chat import ChatRequest
from gateway.fusion.base import Calls, Fused, FusionKind, FusionPlan, Strategy

__all__ = ["Consensus"]


class Consensus(Strategy):
    kind = FusionKind.CONSENSUS

    async def fuse(self, plan: FusionPlan, request: ChatRequest, calls: Calls) -> Fused:
        candidates = await calls.gather(plan.experts, request)
        if len(candidates) == 1:
            return self.alone(candidates[0])
        vectors = calls.embed([c.result.text or " " for c in candidates])
        similarity = vectors @ vectors.T
        np.fill_diagonal(similarity, 0.0)
        agreement = similarity.sum(axis=1) / (len(candidates) - 1)
        best = int(np.argmax(agreement))  # the first maximum: the best-ranked among ties
        reason = f"closest to the others (mean cosine {agreement[best]:.3f})"
        used = tuple(c.expert for c in candidates)
        chosen = candidates[best]
        return Fused(self.kind, used, chosen.expert, reason, chosen.result)
