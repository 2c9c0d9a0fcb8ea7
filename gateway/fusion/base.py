"""Output-level fusion: the interface every strategy implements, and what it works with.

    plan = FusionPlan(strategy, experts, weights, deadline_s)   # from gateway/fusion/plan.py
    fused = await STRATEGIES[plan.strategy].fuse(plan, calls)   # a Fused answer

A strategy decides whom to call and how to combine the answers; `Calls` does the calling (the
gateway's expert pool, concurrently, under the plan's deadline, dropping a candidate that fails
or misses it, and counting every call's usage). A strategy never sees HTTP or the pool.

    vote        normalise each final answer (letter, number, short text), weighted majority
    consensus   the free-text answer most similar to the others (embedding agreement)
    judge       a judge expert picks the best candidate
    aggregate   an aggregator expert synthesises the candidates (Mixture-of-Agents)
    cascade     the cheapest experts first; escalate only when they disagree
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from experts.chat import ChatDelta, ChatRequest, ChatResult

__all__ = [
    "Calls",
    "Candidate",
    "Fused",
    "FusionKind",
    "FusionPlan",
    "Strategy",
]


class FusionKind(enum.StrEnum):
    NONE = "none"
    VOTE = "vote"
    CONSENSUS = "consensus"
    JUDGE = "judge"
    AGGREGATE = "aggregate"
    CASCADE = "cascade"


@dataclass(frozen=True, slots=True)
class FusionPlan:
    """What to fuse: the candidate experts best first, each with the router's weight."""

    strategy: FusionKind
    experts: tuple[str, ...]
    weights: tuple[float, ...]
    deadline_s: float
    costs: tuple[float, ...] = ()
    """Each expert's cost (registry `cost`), for the cascade's cheapest-first order."""
    confident: bool = False
    """The router is sure of its first choice (a cascade may stop at one answer)."""
    judge: str | None = None
    aggregator: str | None = None
    cascade_first: int = 2

    def weight(self, expert: str) -> float:
        return self.weights[self.experts.index(expert)] if expert in self.experts else 0.0

    def rank(self, expert: str) -> int:
        return self.experts.index(expert) if expert in self.experts else len(self.experts)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One expert's whole answer."""

    expert: str
    result: ChatResult
    seconds: float


@dataclass(frozen=True, slots=True)
class Fused:
    """The fused answer: whole (`result`) or, for a synthesised one, streamed (`stream`)."""

    strategy: FusionKind
    """What was applied: `none` when one candidate answered alone."""
    used: tuple[str, ...]
    """Every expert whose answer was used, in order."""
    by: str
    """The expert whose text is returned (the winner, the judged best, the aggregator)."""
    reason: str
    result: ChatResult | None = None
    stream: AsyncIterator[ChatDelta] | None = None
    notes: dict[str, float] = field(default_factory=dict)


class Calls(Protocol):
    """How a strategy calls experts (implemented over the gateway's pool in `calls.py`)."""

    async def gather(self, experts: Sequence[str], request: ChatRequest) -> list[Candidate]:
        """Whole answers of `experts`, called concurrently under the plan's deadline, in the
        order given; those that failed or missed it are dropped. Raises the last failure's
        `ExpertError` (an `ExpertTimeout` past the deadline) when none answered."""

    async def call(self, expert: str, request: ChatRequest) -> ChatResult:
        """One expert's whole answer (judge, aggregator); raises `ExpertError`."""

    def stream(self, expert: str, request: ChatRequest) -> AsyncIterator[ChatDelta]:
        """One expert's streamed answer (the aggregator's, when the client streams)."""

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """The router's embeddings of `texts` (L2-normalised)."""


class Strategy(abc.ABC):
    """One way of fusing; `fuse` is the one method a strategy implements."""

    kind: ClassVar[FusionKind]

    @staticmethod
    def alone(candidate: Candidate, why: str = "one candidate answered") -> Fused:
        """The answer of the one candidate left: nothing was fused."""
        return Fused(FusionKind.NONE, (candidate.expert,), candidate.expert, why, candidate.result)

    @abc.abstractmethod
    async def fuse(self, plan: FusionPlan, request: ChatRequest, calls: Calls) -> Fused:
        """Call experts through `calls` and answer (errors of `calls` propagate)."""
