"""`GET /v1/models`: `auto` plus every enabled expert the caller may use, with its state."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.deps import ClientDep, StateDep
from gateway.handlers import error_responses
from gateway.protocol import AUTO_MODEL, ExpertStatus, ModelCard, ModelList
from gateway.state import GatewayState

router = APIRouter(tags=["models"], responses=error_responses(401, 503))


@router.get("/v1/models")
async def list_models(state: StateDep, grant: ClientDep) -> ModelList:
    """`auto` and the experts the caller's API key may use; each card's `coe` extension holds
    its circuit breaker state (closed, half_open, open), why, and its last probe."""
    table = await state.pool.sync()
    experts = table.experts if grant is None else grant.allowed(table.experts)
    created = int(state.started_at)
    cards = [ModelCard(id=AUTO_MODEL, created=created)]
    cards += [ModelCard(id=s.name, created=created, coe=status(state, s.name)) for s in experts]
    return ModelList(data=cards)


def status(state: GatewayState, name: str) -> ExpertStatus:
    breaker = state.pool.breakers.state(name)
    probe = state.prober.last.get(name) if state.prober is not None else None
    return ExpertStatus(
        state=breaker.state.value,
        reason=breaker.reason,
        probe=None if probe is None else probe.detail,
    )
