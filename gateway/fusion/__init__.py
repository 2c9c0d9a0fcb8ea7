"""Output-level fusion: several experts answer, one answer is returned (see `base`).

plan.py       whether and how to fuse a request (strategy, candidates, k, deadline)
calls.py      calling experts for a strategy: concurrently, under a deadline, dropping failures
answers.py    the normalised final answer of a text (letter, number, short answer)
vote.py  consensus.py  judge.py  aggregate.py  cascade.py    one strategy each
"""

from collections.abc import Mapping

from gateway.fusion.aggregate import Aggregate
from gateway.fusion.base import Calls, Candidate, Fused, FusionKind, FusionPlan, Strategy
from gateway.fusion.cascade import Cascade
from gateway.fusion.consensus import Consensus
from gateway.fusion.judge import Judge
from gateway.fusion.vote import Vote

__all__ = [
    "STRATEGIES",
    "Calls",
    "Candidate",
    "Fused",
    "FusionKind",
    "FusionPlan",
    "Strategy",
]

STRATEGIES: Mapping[FusionKind, Strategy] = {
    s.kind: s for s in (Vote(), Consensus(), Judge(), Aggregate(), Cascade())
}
"""Every strategy by name (`none` is the absence of one)."""
