"""FastAPI dependencies, as `Annotated` aliases routes can declare."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from gateway.errors import Forbidden, Unauthorized
from gateway.keys import Grant
from gateway.state import GatewayState

__all__ = ["AdminDep", "ClientDep", "StateDep", "authenticate", "get_state", "require_admin"]


def get_state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.coe
    return state


StateDep = Annotated[GatewayState, Depends(get_state)]


def require_admin(state: StateDep, authorization: Annotated[str | None, Header()] = None) -> None:
    """Bearer auth for /admin: 401 without credentials, 403 with wrong ones or when disabled."""
    if not authorization:
        raise Unauthorized("missing 'Authorization: Bearer <admin key>' header")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("expected 'Authorization: Bearer <admin key>'")
    key = state.settings.admin_key
    if key is None:
        raise Forbidden("the admin API is disabled: set COE_ADMIN_KEY to enable it")
    if not hmac.compare_digest(token.strip().encode(), key.get_secret_value().encode()):
        raise Forbidden("invalid admin key")


AdminDep = Annotated[None, Depends(require_admin)]


async def authenticate(
    state: StateDep, authorization: Annotated[str | None, Header()] = None
) -> Grant | None:
    """A `/v1` caller's grant: None when no key is required (gateway/auth.py)."""
    if state.auth is None:
        return None
    return await state.auth.grant(authorization)


ClientDep = Annotated[Grant | None, Depends(authenticate)]
