"""`/admin/keys`: create, list and revoke client API keys (admin key required).

A new key is in the creation's answer (`key`) and nowhere else: stores keep its SHA-256.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from gateway.deps import AdminDep, StateDep
from gateway.errors import Conflict, NotFound, ServiceUnavailable
from gateway.handlers import error_responses
from gateway.keys import KeyExists, KeyInfo, KeyNotFound, KeyRequest, KeyStore, new_key

router = APIRouter(
    prefix="/admin/keys",
    tags=["admin"],
    responses=error_responses(400, 401, 403, 404, 409, 413, 503),
)


class CreatedKey(KeyInfo):
    key: str
    """The API key, shown this once."""


def _store(state: StateDep) -> KeyStore:
    if state.keys is None:
        raise ServiceUnavailable("no client key store")
    return state.keys


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_key(body: KeyRequest, state: StateDep, _: AdminDep) -> CreatedKey:
    key, record = new_key(body)
    try:
        await _store(state).create(record)
    except KeyExists:
        raise Conflict(f"a key named {body.name!r} exists", code="key_exists") from None
    return CreatedKey(**record.info().model_dump(), key=key)


@router.get("")
async def list_keys(state: StateDep, _: AdminDep) -> list[KeyInfo]:
    return [record.info() for record in await _store(state).list()]


@router.delete("/{ident}")
async def revoke_key(ident: str, state: StateDep, _: AdminDep) -> KeyInfo:
    """Revoke by id or name; the key is refused from the next request on (every replica)."""
    try:
        return (await _store(state).revoke(ident)).info()
    except KeyNotFound:
        raise NotFound(f"no key with id or name {ident!r}", code="key_not_found") from None


@router.get("/{ident}/usage")
async def key_usage(ident: str, state: StateDep, _: AdminDep) -> dict[str, Any]:
    """Lifetime requests, tokens and spend of a key, and what is left of its minute windows."""
    for record in await _store(state).list():
        if ident in (record.id, record.name):
            if state.quotas is None:
                raise ServiceUnavailable("no limit store")
            usage = await state.quotas.usage(record.grant())
            return {"id": record.id, "name": record.name, **usage}
    raise NotFound(f"no key with id or name {ident!r}", code="key_not_found")
