"""Whether and how to fuse one request: `fusion_plan` turns the request, the routing decision and
the configuration into a `FusionPlan`, or into the reason one expert answers.

Precedence: the request's `coe` options > `fusion.categories[<top category>]` > the trained
fan-out rule of the router's artifact (`coe train --fusion adaptive`; `fusion.router_rule`) >
`fusion.default`. One expert answers (no plan) when the strategy is `none`, when the request
asks for tools or a structured `response_format` (never fused as text), when it pins a model
without naming candidates, or when fewer than two candidates are left (k = 1: the router is
sure, or only one is in rotation).

k: the request's (or as many as the candidates it names), else the trained rule's (the router's
`selected`: 1 when it is sure), else with `fusion.adaptive_mass` > 0
the experts of the likeliest categories until their probability reaches that mass (the
router's own adaptive top-k counts too), else `fusion.k`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from experts.chat import ChatRequest
from gateway.errors import InvalidRequest
from gateway.fusion.base import FusionKind, FusionPlan
from gateway.settings import FusionSettings
from routers.base import ExpertTable, RouteDecision
from routers.selection import adaptive_top_k

__all__ = ["Decision", "fusion_plan"]


@dataclass(frozen=True, slots=True)
class Decision:
    """A plan to fuse, or why one expert answers (`plan` None)."""

    plan: FusionPlan | None
    reason: str


def fusion_plan(
    request: ChatRequest,
    decision: RouteDecision | None,
    available: Sequence[str],
    table: ExpertTable,
    settings: FusionSettings,
) -> Decision:
    """See the module docstring. `available`: the experts in rotation, best first (the
    router's order, or the pinned expert). Raises `InvalidRequest` for options that cannot be
    served (an unknown candidate, a judge or aggregator that is not configured)."""
    asked = request.fusion
    structured = request.structured()
    if structured is not None:
        return Decision(None, structured)
    category = decision.category if decision is not None else None
    rule = decision.fusion if decision is not None and settings.router_rule else None
    configured = settings.categories.get(
        category or "", FusionKind(rule) if rule else settings.default
    )
    strategy = FusionKind(asked.strategy) if asked.strategy else configured
    if strategy is FusionKind.NONE:
        return Decision(None, "not configured")
    experts = _candidates(asked.experts, available, table)
    if not request.routed and not asked.experts:
        return Decision(None, "pinned model")
    k = asked.k or (len(asked.experts) if asked.experts else _k(decision, settings, rule))
    chosen = tuple(experts[:k])
    if len(chosen) < 2:
        return Decision(None, "router sure (k=1)" if k < 2 else "one candidate in rotation")
    scores = {e.name: e.score for e in decision.experts} if decision is not None else {}
    costs = {spec.name: spec.cost for spec in table.experts}
    helper = _helper(strategy, settings, table)
    return Decision(
        FusionPlan(
            strategy=strategy,
            experts=chosen,
            weights=tuple(scores.get(name, 1.0) for name in chosen),
            deadline_s=asked.deadline_s or settings.deadline_s,
            costs=tuple(costs.get(name, 0.0) for name in chosen),
            confident=(decision.confidence or 0.0) >= settings.cascade_confidence
            if decision is not None
            else False,
            judge=helper if strategy is FusionKind.JUDGE else None,
            aggregator=helper if strategy is FusionKind.AGGREGATE else None,
            cascade_first=settings.cascade_first,
        ),
        f"{strategy.value} over {len(chosen)}",
    )


def _candidates(asked: Sequence[str], available: Sequence[str], table: ExpertTable) -> list[str]:
    if not asked:
        return list(available)
    unknown = [name for name in asked if table.get(name) is None]
    if unknown:
        raise InvalidRequest(
            f"coe.experts names experts that are not registered: {', '.join(unknown)}",
            param="coe.experts",
        )
    return list(asked)


def _k(decision: RouteDecision | None, settings: FusionSettings, rule: str | None) -> int:
    if rule is not None and decision is not None:
        return decision.selected  # the trained rule's k (its cap applied by the router)
    if settings.adaptive_mass <= 0 or decision is None:
        return settings.k
    adaptive = decision.selected
    if decision.categories:
        probabilities = np.array([p for _, p in decision.categories], dtype=np.float64)
        adaptive = max(adaptive, int(adaptive_top_k(probabilities, settings.adaptive_mass)[0]))
    return max(1, min(adaptive, settings.k))


def _helper(strategy: FusionKind, settings: FusionSettings, table: ExpertTable) -> str | None:
    """The judge or aggregator the strategy needs, checked to be registered."""
    if strategy is FusionKind.JUDGE:
        key, name = "judge", settings.judge
    elif strategy is FusionKind.AGGREGATE:
        key, name = "aggregator", settings.aggregator
    else:
        return None
    if name is None or table.get(name) is None:
        raise InvalidRequest(
            f"fusion {strategy.value!r} needs an enabled expert as fusion.{key} "
            f"(configured: {name!r})",
            param="coe.fusion",
        )
    return name
