"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.deps import StateDep
from gateway.state import GatewayState

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


_READY = {
    "description": "Ready, or not (503) with `reasons`; the same JSON object either way",
    "content": {"application/json": {"schema": {"type": "object"}}},
}


@router.get("/readyz", response_class=JSONResponse, responses={200: _READY, 503: _READY})
async def readyz(state: StateDep) -> JSONResponse:
    """Ready when the router is loaded, the registry answers, some expert is in rotation and
    the limit store does not refuse; `reasons` says what is missing."""
    registry_ok = await state.registry.ping()
    limits = await _limits(state)
    names = state.pool.table.names()
    out = {n: state.pool.breakers.state(n).reason for n in names if not state.pool.available([n])}
    reasons = [
        *([] if state.ready else ["router loading"]),
        *([] if registry_ok else ["registry unreachable"]),
        *(
            ["limit store unreachable (limits.on_store_failure: closed)"]
            if limits and limits["refusing"]
            else []
        ),
        *(["every expert is out of rotation"] if names and len(out) == len(names) else []),
    ]
    body: dict[str, Any] = {
        "status": "not ready" if reasons else "ready",
        "reasons": reasons,
        "router": state.router.name if state.ready else "loading",
        "registry": _registry_status(state, registry_ok),
        "experts": len(names),
        "out_of_rotation": out,
    }
    if limits is not None:
        body["limits"] = limits
    if state.discovery is not None:  # informative: the registry serves its last state meanwhile
        body["discovery"] = {"kubernetes": state.discovery.status()}
    return JSONResponse(body, status_code=503 if reasons else 200)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(state: StateDep) -> Response:
    """The gateway's Prometheus metrics (README "Observability")."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def _limits(state: GatewayState) -> dict[str, Any] | None:
    """Where per-key limits live and what happens when that store is down."""
    quotas = state.quotas
    if quotas is None:
        return None
    reachable = await quotas.reachable()
    return {
        "store": "redis" if quotas.shared else "process",
        "reachable": reachable,
        "on_store_failure": quotas.on_failure,
        "refusing": not reachable and quotas.on_failure == "closed",
    }


def _registry_status(state: GatewayState, reachable: bool) -> str:
    if not reachable:
        return "unreachable"
    if state.pool.lost is not None:  # still ready: the last good table is served
        return (
            f"lost its data ({state.pool.lost}): serving the last good table until "
            "`coe experts restore`"
        )
    return "ok"
