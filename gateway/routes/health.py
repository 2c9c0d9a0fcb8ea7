"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.deps import StateDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: StateDep) -> JSONResponse:
    """Ready when the router is loaded and the registry answers."""
    registry_ok = await state.registry.ping()
    ok = state.ready and registry_ok
    body: dict[str, Any] = {
        "status": "ready" if ok else "not ready",
        "router": state.router.name if state.ready else "loading",
        "registry": "ok" if registry_ok else "unreachable",
        "experts": len(state.pool.table.experts),
    }
    if state.discovery is not None:  # informative: the registry serves its last state meanwhile
        body["discovery"] = {"kubernetes": state.discovery.status()}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics")
async def metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
