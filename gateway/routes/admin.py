"""`/admin/experts`: register, inspect, change and remove experts at run time (bearer key).

Every write is checked by `SpecGuard` (the `security` settings: a refused `endpoint`,
`api_key_env` or local `model` is a 400 naming it) before anything reaches the endpoint, and is
recorded in the registry's history (`GET /admin/experts/history`) as the admin API's.
"""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Query, status

from experts.errors import ExpertError
from experts.retriever import with_pilots
from gateway.deps import AdminDep, StateDep
from gateway.errors import Conflict, InvalidRequest, NotFound
from gateway.guard import SpecGuard, SpecRefused
from gateway.handlers import error_responses
from registry.history import Change
from registry.spec import ExpertSpec, ExpertSpecPatch

router = APIRouter(
    prefix="/admin/experts",
    tags=["admin"],
    responses=error_responses(400, 401, 403, 404, 409, 413, 503),
)

ADMIN_ACTOR = "admin-api"
MAX_HISTORY = 1000


@router.get("")
async def list_experts(state: StateDep, _: AdminDep) -> list[ExpertSpec]:
    return await state.registry.list()


@router.get("/history")
async def expert_history(
    state: StateDep,
    _: AdminDep,
    name: str | None = None,
    limit: int = Query(default=100, ge=1, le=MAX_HISTORY),
) -> list[Change]:
    """The registry's recorded changes, newest first (of expert `name` only, when given).

    (This path is the history: an expert named "history" is listed by GET /admin/experts.)"""
    return await state.registry.history(name, limit)


@router.post("", status_code=status.HTTP_201_CREATED)
async def add_expert(spec: ExpertSpec, state: StateDep, admin: AdminDep) -> ExpertSpec:
    """Routable on the next request: the pool re-syncs before answering."""
    if spec.managed_by is not None:
        raise InvalidRequest(
            "managed_by is set by a discovery source, not through the admin API",
            param="managed_by",
        )
    if await state.registry.get(spec.name) is not None:
        raise Conflict(f"an expert named {spec.name!r} already exists", code="expert_exists")
    await _allowed(state, spec)
    spec = await _with_pilots(spec)
    _buildable(state, spec)
    await state.registry.add(spec, actor=_actor(admin))
    await state.pool.sync()
    return spec


@router.get("/{name}")
async def get_expert(name: str, state: StateDep, _: AdminDep) -> ExpertSpec:
    spec = await state.registry.get(name)
    if spec is None:
        raise NotFound(f"no expert named {name!r}", code="expert_not_found")
    return spec


@router.patch("/{name}")
async def update_expert(
    name: str, patch: ExpertSpecPatch, state: StateDep, admin: AdminDep
) -> ExpertSpec:
    current = await state.registry.get(name)
    if current is not None:
        _not_managed(current)
        changed = patch.apply(current)
        await _allowed(state, changed)
        pilots = await _with_pilots(changed)
        if pilots.exemplars != changed.exemplars:
            patch = patch.model_copy(update={"exemplars": pilots.exemplars})
        _buildable(state, patch.apply(current))
    spec = await state.registry.update(name, patch, actor=_actor(admin))
    await state.pool.sync()
    return spec


@router.delete("/{name}")
async def remove_expert(name: str, state: StateDep, admin: AdminDep) -> ExpertSpec:
    """New requests stop at once; requests in flight on it finish."""
    current = await state.registry.get(name)
    if current is not None:
        _not_managed(current)
    spec = await state.registry.remove(name, actor=_actor(admin))
    await state.pool.sync()
    return spec


def _not_managed(spec: ExpertSpec) -> None:
    """A discovered expert follows its source: a change here would be undone by the next event."""
    if spec.managed_by is not None:
        raise Conflict(
            f"expert {spec.name!r} is managed by {spec.managed_by}: change or remove it there",
            code="expert_managed",
        )


async def _with_pilots(spec: ExpertSpec) -> ExpertSpec:
    """A retriever without exemplars is routable by its index's pilot texts."""
    try:
        return await anyio.to_thread.run_sync(with_pilots, spec)
    except (ValueError, ExpertError) as exc:  # a missing index, or no index server there
        raise InvalidRequest(
            f"retriever {spec.name!r}: {exc}",
            param="options.index" if not spec.endpoint else "endpoint",
        ) from exc


def _buildable(state: StateDep, spec: ExpertSpec) -> None:
    try:
        state.pool.check(spec)
    except ValueError as exc:
        raise InvalidRequest(f"expert {spec.name!r} cannot be built: {exc}") from exc


async def _allowed(state: StateDep, spec: ExpertSpec) -> None:
    """The `security` rules (DNS included), before anything reaches the endpoint."""
    try:
        await SpecGuard(state.settings.security).acheck(spec)
    except SpecRefused as exc:
        raise InvalidRequest(f"expert {spec.name!r}: {exc}", param=exc.param) from None


def _actor(admin: object) -> str:
    """Who the history names: the admin key's name once keys have names, else the API."""
    return f"admin:{admin}" if isinstance(admin, str) and admin else ADMIN_ACTOR
