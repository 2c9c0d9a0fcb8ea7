"""`GET /v1/models`: `auto` plus every enabled expert."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.deps import StateDep
from gateway.protocol import AUTO_MODEL, ModelCard, ModelList

router = APIRouter(tags=["models"])


@router.get("/v1/models")
async def list_models(state: StateDep) -> ModelList:
    table = await state.pool.sync()
    cards = [ModelCard(id=AUTO_MODEL, created=int(state.started_at))]
    cards += [ModelCard(id=name, created=int(state.started_at)) for name in table.names()]
    return ModelList(data=cards)
