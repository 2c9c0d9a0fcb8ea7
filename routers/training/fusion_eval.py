"""Output-level fusion on logged answers: what `coe eval --fusion` and `coe train --fusion
adaptive` measure, applying the gateway's own rules (`routers.fusion_rule`).

Per query, as the gateway serving a scorer artifact does (`routers.trained.TrainedRouter`):

    utility  = predicted quality - cost_weight x expert cost       (the artifact's Selection)
    ranked   = experts by utility, cheaper first on ties
    k        = fixed k, or adaptive: the fewest ranked experts whose softmax(utility / T)
               probability reaches `mass` (`routers.selection.adaptive_top_k`), at most max_k
    answer   = vote: `tally` of the k candidates' normalised answers, weighted by predicted
               quality; cascade: cheapest first, stop when `settled`, then `tally`; none: the
               first ranked expert

The realised score is that of the expert whose answer is returned; the cost is the sum of the
realised costs of every expert called. Logged answers are normalised with
`routers.final_answer.final_answer`, as live ones are.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from routers.classifiers import Queries
from routers.final_answer import final_answer
from routers.fusion_rule import FusionRule, RuleStrategy, cascade_order, settled, tally
from routers.probability import softmax
from routers.selection import adaptive_top_k
from routers.trained_model import Selection, TrainedModel
from routers.training.datasets import DatasetError, RoutingOutcomes

__all__ = [
    "CASCADE_CONFIDENCE",
    "MIN_GAIN",
    "FusionOutcome",
    "FusionPolicy",
    "Logged",
    "PolicyKind",
    "answer_ids",
    "apply_policy",
    "as_rule",
    "logged_from",
    "policy_of",
    "search_adaptive",
]

CASCADE_CONFIDENCE = 0.9
"""The gateway's default `fusion.cascade_confidence`."""

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


class PolicyKind(enum.StrEnum):
    NONE = "none"
    VOTE = "vote"
    CASCADE = "cascade"


@dataclass(frozen=True)
class FusionPolicy:
    """How many experts a query gets and how their answers are fused (module docstring)."""

    kind: PolicyKind = PolicyKind.VOTE
    cost_weight: float = 0.0
    k: int = 3
    """Fixed fan-out, or the cap on the adaptive one."""
    mass: float = 0.0
    """> 0: adaptive fan-out at this probability mass; 0: always k."""
    temperature: float = 0.05
    cascade_first: int = 2

    def describe(self) -> str:
        fan = f"adaptive mass {self.mass:g} (T {self.temperature:g}, k<={self.k})"
        return f"{self.kind.value}, {fan if 0 < self.mass < 1 else f'top {self.k}'}"


@dataclass(frozen=True)
class Logged:
    """What the policy is applied to: predicted quality, costs, outcomes and answers."""

    quality: Floats
    """(n, m) the router's predicted quality."""
    expert_costs: Floats
    """(m,) the costs the router decides on."""
    scores: Floats
    """(n, m) realised outcome of each expert (NaN counted as 0)."""
    costs: Floats
    """(n, m) realised cost of each call."""
    answers: Ints
    """(n, m) normalised answer ids (`answer_ids`), -1 = no answer."""
    confident: npt.NDArray[np.bool_] | None = None
    """(n,) the router is sure of its category (cascade asks the cheapest alone)."""

    def restrict(self, columns: Sequence[int]) -> Logged:
        """Only these experts deployed (the router ranks among them)."""
        cols = list(columns)
        return Logged(
            self.quality[:, cols],
            self.expert_costs[cols],
            self.scores[:, cols],
            self.costs[:, cols],
            self.answers[:, cols],
            self.confident,
        )


@dataclass(frozen=True)
class FusionOutcome:
    accuracy: float
    avg_cost: float
    avg_experts: float
    fused_share: float
    """Share of queries that called more than one expert."""

    def to_json(self) -> dict[str, float]:
        return {
            "accuracy": self.accuracy,
            "avg_cost": self.avg_cost,
            "avg_experts": self.avg_experts,
            "fused_share": self.fused_share,
        }


def answer_ids(answers: npt.NDArray[np.str_]) -> Ints:
    """Each logged answer normalised (`final_answer`) and numbered; -1 where there is none."""
    numbers: dict[str, int] = {}
    normal: dict[str, int] = {}
    for raw in np.unique(answers):
        answer = final_answer(str(raw)) if str(raw).strip() else None
        normal[str(raw)] = -1 if answer is None else numbers.setdefault(answer, len(numbers))
    lookup = np.vectorize(lambda a: normal[str(a)], otypes=[np.int64])
    return np.asarray(lookup(answers), dtype=np.int64) if answers.size else answers.astype(int)


def _ranking(logged: Logged, policy: FusionPolicy) -> tuple[Ints, Floats]:
    """Expert order per query (best utility first, cheaper on ties) and the utilities in it."""
    utility = logged.quality - policy.cost_weight * logged.expert_costs[None, :]
    order = np.lexsort((np.broadcast_to(logged.expert_costs, utility.shape), -utility), axis=1)
    return order.astype(np.int64), np.take_along_axis(utility, order, axis=1)


def _fan_out(sorted_utility: Floats, policy: FusionPolicy) -> Ints:
    n, m = sorted_utility.shape
    cap = max(1, min(policy.k, m))
    if policy.mass <= 0 or policy.kind is PolicyKind.NONE:
        return np.full(n, 1 if policy.kind is PolicyKind.NONE else cap, dtype=np.int64)
    probs = softmax(sorted_utility / policy.temperature)
    return adaptive_top_k(probs, min(policy.mass, 1.0), max_k=cap)


def _vote(logged: Logged, order: Ints, k: Ints, cap: int) -> tuple[Ints, Floats]:
    """The answering expert per query and the summed cost of the k called (vectorised tally)."""
    n = len(order)
    rows = np.arange(n)
    top = order[:, :cap]
    called = np.arange(cap)[None, :] < k[:, None]
    answers = np.where(called, np.take_along_axis(logged.answers, top, axis=1), -1)
    weights = np.maximum(np.take_along_axis(logged.quality, top, axis=1), 1e-9)
    n_answers = int(logged.answers.max()) + 2 if logged.answers.size else 1
    totals = np.zeros((n, n_answers))
    for j in range(cap):
        voting = answers[:, j] >= 0
        np.add.at(totals, (rows[voting], answers[voting, j]), weights[voting, j])
    held = np.where(answers >= 0, totals[rows[:, None], np.maximum(answers, 0)], -np.inf)
    best = held.max(axis=1, keepdims=True)
    # the first (best-ranked) candidate holding a top total; ties between answers go to it
    winner = np.argmax(held >= best - 1e-12, axis=1)
    winner = np.where(np.isfinite(best[:, 0]), winner, 0)
    paid = np.where(called, np.take_along_axis(logged.costs, top, axis=1), 0.0).sum(axis=1)
    return top[rows, winner], paid


def _cascade(
    logged: Logged, order: Ints, k: Ints, policy: FusionPolicy
) -> tuple[Ints, Floats, Ints]:
    chosen = np.zeros(len(order), dtype=np.int64)
    paid = np.zeros(len(order))
    count = np.zeros(len(order), dtype=np.int64)
    for i in range(len(order)):
        candidates = [int(e) for e in order[i, : k[i]]]
        by_cost = [
            candidates[j] for j in cascade_order([logged.expert_costs[e] for e in candidates])
        ]
        sure = logged.confident is not None and bool(logged.confident[i])
        first = 1 if sure else max(1, policy.cascade_first)
        called = by_cost[:first]
        rest = by_cost[first:]

        def answer(e: int, row: int = i) -> str | None:
            a = int(logged.answers[row, e])
            return None if a < 0 else str(a)

        while not settled([answer(e) for e in called]) and rest:
            called.append(rest.pop(0))
        ranked = sorted(called, key=candidates.index)
        winner, _ = tally([answer(e) for e in ranked], [logged.quality[i, e] for e in ranked])
        chosen[i] = ranked[winner]
        paid[i] = sum(logged.costs[i, e] for e in called)
        count[i] = len(called)
    return chosen, paid, count


def apply_policy(logged: Logged, policy: FusionPolicy) -> FusionOutcome:
    """The policy's accuracy, mean cost and mean number of experts called on `logged`."""
    order, utility = _ranking(logged, policy)
    k = _fan_out(utility, policy)
    rows = np.arange(len(order))
    if policy.kind is PolicyKind.CASCADE:
        chosen, paid, count = _cascade(logged, order, k, policy)
    else:
        cap = int(k.max()) if len(k) else 1
        chosen, paid = _vote(logged, order, k, cap)
        count = k
    got = np.nan_to_num(logged.scores[rows, chosen], nan=0.0)
    return FusionOutcome(
        accuracy=float(got.mean()),
        avg_cost=float(paid.mean()),
        avg_experts=float(count.mean()),
        fused_share=float((count > 1).mean()),
    )


MIN_GAIN = 0.003
"""Fusion must beat top-1 routing on the val rows by this much accuracy to be chosen: a smaller
gain is within the noise of a few val questions, and top-1 then costs less for the same."""


def _best(
    logged: Logged, policies: Sequence[FusionPolicy], max_cost: float
) -> tuple[FusionPolicy, FusionOutcome] | None:
    """The most accurate policy within `max_cost` (then the cheaper)."""
    best: tuple[FusionPolicy, FusionOutcome] | None = None
    for policy in policies:
        outcome = apply_policy(logged, policy)
        if outcome.avg_cost > max_cost:
            continue
        key = (outcome.accuracy, -outcome.avg_cost)
        if best is None or key > (best[1].accuracy, -best[1].avg_cost):
            best = (policy, outcome)
    return best


def search_adaptive(
    logged: Logged,
    *,
    max_cost: float,
    cost_weights: Sequence[float],
    masses: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99),
    temperatures: Sequence[float] = (0.02, 0.05, 0.1, 0.2),
    caps: Sequence[int] = (2, 3, 5, 7),
    min_gain: float = MIN_GAIN,
) -> tuple[FusionPolicy, FusionOutcome]:
    """The fusion policy with the best accuracy on `logged` within `max_cost` (then the
    cheaper) among adaptive votes and cascades over the top few, unless plain top-1 routing (k =
    1, its cost weight chosen the same way) is within `min_gain` of it: then top-1, so the rule
    does no worse than routing alone where fusion does not clearly pay. ValueError when nothing
    fits the budget."""
    top1 = _best(
        logged, [FusionPolicy(PolicyKind.NONE, cost_weight=float(w), k=1) for w in cost_weights],
        max_cost,
    )  # fmt: skip
    votes = [
        FusionPolicy(PolicyKind.VOTE, cost_weight=float(w), k=cap, mass=mass, temperature=t)
        for w, mass, t, cap in itertools.product(cost_weights, masses, temperatures, caps)
    ]
    cascades = [  # the top `cap` by utility, cheapest first, escalating while they disagree
        FusionPolicy(PolicyKind.CASCADE, cost_weight=float(w), k=cap, mass=1.0)
        for w, cap in itertools.product(cost_weights, caps)
        if cap > 2
    ]
    fused = _best(logged, [*votes, *cascades], max_cost)
    if fused is not None and (top1 is None or fused[1].accuracy >= top1[1].accuracy + min_gain):
        return fused
    if top1 is None:
        raise ValueError(f"no fusion policy costs <= {max_cost:g} on the validation rows")
    return top1


def logged_from(
    model: TrainedModel,
    data: RoutingOutcomes,
    queries: Queries,
    *,
    cascade_confidence: float = CASCADE_CONFIDENCE,
) -> Logged:
    """The artifact's predictions on `data` (columns: the artifact's experts, in its order)."""
    if data.answers is None:
        raise DatasetError(
            f"{data.name}: fusion is evaluated on each expert's answer, and these outcomes "
            "carry none (JSONL 'answers', CSV '<expert>|answer' or '<expert>|pred' columns)"
        )
    if model.expert_costs is None:
        raise ValueError(f"{model.manifest.tag}: fusion needs an expert scorer artifact")
    confident = None
    if model.coe is not None:
        confident = model.category_probs(queries).max(axis=1) >= cascade_confidence
    return Logged(
        quality=model.expert_quality(queries),
        expert_costs=np.asarray(model.expert_costs, dtype=np.float64),
        scores=data.filled_scores(),
        costs=data.costs,
        answers=answer_ids(data.answers),
        confident=confident,
    )


def policy_of(model: TrainedModel, kind: PolicyKind | str, k: int = 3) -> FusionPolicy:
    """The policy `coe eval --fusion KIND` applies with this artifact: `adaptive` is the
    artifact's trained rule; `vote` and `cascade` fuse a fixed top `k`; `none` routes top-1.
    All rank the experts at the artifact's cost weight."""
    weight = model.selection.cost_weight
    if kind == "adaptive":
        rule = model.fusion
        if rule is None:
            raise ValueError(
                f"{model.manifest.tag}: no trained fan-out rule in this artifact "
                "(train it with `coe train --fusion adaptive --max-cost X`)"
            )
        strategy = PolicyKind(rule.strategy.value)
        selection = model.selection
        return FusionPolicy(
            strategy if rule.max_k > 1 else PolicyKind.NONE,
            cost_weight=weight,
            k=rule.max_k,
            mass=selection.top_k_mass if rule.max_k > 1 else 0.0,
            temperature=selection.top_k_temperature,
            cascade_first=rule.cascade_first,
        )
    kind = PolicyKind(kind)
    return FusionPolicy(kind, cost_weight=weight, k=1 if kind is PolicyKind.NONE else k)


def as_rule(policy: FusionPolicy) -> tuple[Selection, FusionRule]:
    """What an artifact records for `policy` (the inverse of `policy_of(..., "adaptive")`)."""
    fused = policy.kind is not PolicyKind.NONE
    selection = Selection(
        cost_weight=policy.cost_weight,
        # a fixed k is the whole mass, capped: k = max_k for every query
        top_k_mass=(policy.mass or 1.0) if fused else 0.0,
        top_k_temperature=policy.temperature,
    )
    strategy = RuleStrategy.CASCADE if policy.kind is PolicyKind.CASCADE else RuleStrategy.VOTE
    rule = FusionRule(strategy, max_k=policy.k if fused else 1, cascade_first=policy.cascade_first)
    return selection, rule
