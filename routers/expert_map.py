"""Step two of two-step routing: category probabilities -> ordered experts, or abstain.

Which categories an expert serves (`served_categories`)::

    spec.categories (without '*')     if it lists any
    (spec.name,)                      else, if it has exemplars: a category named after itself
    ()                                else
    '*' in spec.categories            a generalist: serves every category, ranked after specialists

The order of `RouteDecision.experts` (each name once)::

    1. specialists of the top category, by (cost, name)
    2. specialists of the next categories, in probability order
    3. generalists, by (cost, name)
    4. the fallback expert, if not already listed

When the router abstains (best cosine < min_similarity, top probability < min_confidence, or
no specialist lists the top category) the order becomes fallback, generalists, specialists,
and `fallback=True` with a `reason`. An expert's score is the probability of the category
through which it was first reached (generalists: the top category; an unreached fallback: 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from registry.spec import ExpertSpec
from routers.base import ExpertTable, RouteDecision, ScoredExpert
from routers.config import RouterConfig

__all__ = ["GENERALIST", "ExpertMap", "is_generalist", "served_categories", "sort_categories"]

GENERALIST = "*"


def served_categories(spec: ExpertSpec) -> tuple[str, ...]:
    """The named categories `spec` serves (not counting '*'), in the order it lists them."""
    named = tuple(dict.fromkeys(c for c in spec.categories if c != GENERALIST))
    if named:
        return named
    return (spec.name,) if spec.exemplars else ()


def is_generalist(spec: ExpertSpec) -> bool:
    return GENERALIST in spec.categories


def sort_categories(probabilities: dict[str, float]) -> tuple[tuple[str, float], ...]:
    """Most probable first; ties by label, so the order is deterministic."""
    return tuple(sorted(((c, float(p)) for c, p in probabilities.items()), key=_by_prob))


def _by_prob(item: tuple[str, float]) -> tuple[float, str]:
    return (-item[1], item[0])


def _by_cost(spec: ExpertSpec) -> tuple[float, str]:
    return (spec.cost, spec.name)


@dataclass(frozen=True, slots=True)
class ExpertMap:
    """The category -> expert map plus the abstention policy, shared by every category router."""

    min_confidence: float = 0.0
    min_similarity: float = 0.0
    fallback: str | None = None

    @classmethod
    def from_config(cls, config: RouterConfig) -> ExpertMap:
        return cls(config.min_confidence, config.min_similarity, config.fallback)

    def decide(
        self,
        categories: Sequence[tuple[str, float]],
        table: ExpertTable,
        *,
        top_similarity: float | None = None,
    ) -> RouteDecision:
        """`categories` sorted most probable first (see `sort_categories`)."""
        categories = tuple(categories)
        experts = tuple(e for e in table.experts if e.enabled)
        if not experts:
            return RouteDecision(
                experts=(),
                categories=categories,
                reason="no experts",
                top_similarity=top_similarity,
            )
        top, others, generalists = self._rank(categories, experts)
        reason = self._abstain_reason(categories, experts, top_similarity)
        fallback = self._fallback(experts, top + others + generalists)
        if reason:
            ordered = _unique(fallback + generalists + top + others)
            if not fallback:
                reason += f"; fallback {self.fallback!r} unavailable" if self.fallback else ""
        else:
            # Fail over to generalists before specialists of a less likely category.
            ordered = _unique(top + generalists + others + fallback)
        return RouteDecision(
            experts=ordered,
            categories=categories,
            fallback=bool(reason),
            reason=reason or f"category {categories[0][0]!r}",
            top_similarity=top_similarity,
        )

    @staticmethod
    def _rank(
        categories: tuple[tuple[str, float], ...], experts: tuple[ExpertSpec, ...]
    ) -> tuple[tuple[ScoredExpert, ...], tuple[ScoredExpert, ...], tuple[ScoredExpert, ...]]:
        """(specialists of the top category, of the other categories, generalists)."""
        by_cost = sorted(experts, key=_by_cost)
        serving: dict[str, list[ExpertSpec]] = {}
        for spec in by_cost:
            for category in served_categories(spec):
                serving.setdefault(category, []).append(spec)
        specialists = [
            [ScoredExpert(spec.name, p) for spec in serving.get(category, ())]
            for category, p in categories
        ]
        top = tuple(specialists[0]) if specialists else ()
        others = _unique(tuple(e for group in specialists[1:] for e in group))
        others = tuple(e for e in others if e.name not in {t.name for t in top})
        top_p = categories[0][1] if categories else 0.0
        generalists = tuple(ScoredExpert(s.name, top_p) for s in by_cost if is_generalist(s))
        return top, others, generalists

    def _abstain_reason(
        self,
        categories: tuple[tuple[str, float], ...],
        experts: tuple[ExpertSpec, ...],
        top_similarity: float | None,
    ) -> str:
        if not categories:
            return "no categories: no exemplars configured"
        label, p = categories[0]
        if top_similarity is not None and top_similarity < self.min_similarity:
            return f"out of domain: best similarity {top_similarity:.3f} < {self.min_similarity}"
        if p < self.min_confidence:
            return f"low confidence: {label!r} at {p:.3f} < {self.min_confidence}"
        if all(label not in served_categories(e) and not is_generalist(e) for e in experts):
            return f"no expert serves category {label!r} and there is no generalist ('*')"
        return ""

    def _fallback(
        self, experts: tuple[ExpertSpec, ...], ranked: tuple[ScoredExpert, ...]
    ) -> tuple[ScoredExpert, ...]:
        if self.fallback is None or all(e.name != self.fallback for e in experts):
            return ()
        score = next((s.score for s in ranked if s.name == self.fallback), 0.0)
        return (ScoredExpert(self.fallback, score),)


def _unique(experts: tuple[ScoredExpert, ...]) -> tuple[ScoredExpert, ...]:
    seen: set[str] = set()
    out = []
    for expert in experts:
        if expert.name not in seen:
            seen.add(expert.name)
            out.append(expert)
    return tuple(out)
