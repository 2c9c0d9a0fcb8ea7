"""`POST /v1/route`: the routing decision for a query, without calling any expert."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.deps import ClientDep, StateDep
from gateway.errors import InvalidRequest
from gateway.handlers import error_responses
from gateway.protocol import (
    RouteCategory,
    RouteExpert,
    RouteFusion,
    RouteRequest,
    RouteResponse,
    RouteRetrieval,
)

router = APIRouter(tags=["routing"], responses=error_responses(400, 401, 403, 413, 503))


@router.post("/v1/route")
async def route(body: RouteRequest, state: StateDep, grant: ClientDep) -> RouteResponse:
    """The decision as the router makes it; `selected` and the fusion plan hold only what the
    caller's API key may use."""
    query = body.text()
    if query is None:
        raise InvalidRequest("give a non-empty 'query' or 'messages'", param="query")
    preview = await state.service.preview(query, grant)
    decision = preview.decision
    plan = preview.fusion
    fusion = RouteFusion(
        strategy=plan.strategy.value if plan else "none",
        k=len(plan.experts) if plan else 1,
        experts=list(plan.experts if plan else preview.selected[:1]),
        reason=preview.fusion_reason,
    )
    return RouteResponse(
        category=decision.category,
        categories=[RouteCategory(name=n, probability=p) for n, p in decision.categories],
        experts=[RouteExpert(name=e.name, score=e.score) for e in decision.experts],
        selected=list(preview.selected),
        fallback=decision.fallback,
        reason=decision.reason,
        router=decision.router,
        route_ms=round(decision.latency_ms, 3),
        top_similarity=decision.top_similarity,
        fusion=fusion,
        retrieval=RouteRetrieval(
            mode=preview.retrieval.mode.value,
            retrievers=[
                RouteCategory(name=n, probability=p) for n, p in preview.retrieval.retrievers
            ],
            reason=preview.retrieval.reason,
        ),
    )
