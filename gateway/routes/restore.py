"""`POST /admin/experts/restore`: refill a registry that lost its data (a Redis restarted without
persistence) from this replica's last good table, or from a backup (`coe experts list --json`).

Until then every replica keeps serving its last good table (`ExpertPool.lost`); nothing is
restored automatically, so an operator decides which copy is right.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from gateway.deps import AdminDep, StateDep
from gateway.errors import InvalidRequest
from gateway.handlers import error_responses
from gateway.pool import mark_registry
from registry.base import ExpertExists
from registry.spec import ExpertSpec

router = APIRouter(
    prefix="/admin/experts", tags=["admin"], responses=error_responses(400, 401, 403, 413, 503)
)


class RestoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    experts: list[ExpertSpec] | None = Field(
        default=None,
        max_length=10_000,
        description="Specs to restore (a backup); none: this replica's last good table.",
    )


class RestoreResult(BaseModel):
    restored: list[str]
    """Experts written back."""
    kept: list[str]
    """Experts the registry already had (left as they are)."""
    was_lost: str | None
    """Why the registry was not trusted before, if it was not."""


@router.post("/restore")
async def restore(body: RestoreRequest, state: StateDep, _: AdminDep) -> RestoreResult:
    specs = body.experts if body.experts is not None else list(state.pool.table.experts)
    for spec in specs:
        try:
            state.pool.check(spec)
        except ValueError as exc:
            raise InvalidRequest(f"expert {spec.name!r} cannot be built: {exc}") from exc
    restored, kept = [], []
    for spec in specs:
        try:
            await state.registry.add(spec, actor="admin-api:restore")
            restored.append(spec.name)
        except ExpertExists:
            kept.append(spec.name)
    await mark_registry(state.registry, restored=True)
    was_lost = state.pool.lost
    await state.pool.restored()
    return RestoreResult(restored=restored, kept=kept, was_lost=was_lost)
