"""Who may call `/v1/*`: client keys (`gateway/keys.py`) per `auth.client_keys`.

    auto      on a loopback address: open until the first key is created, then required;
              on any other address: required (fail closed: until a key exists, 401 says how
              to create one)
    required  always
    off       open; on a non-loopback address only with `auth.allow_open: true` (else the
              gateway refuses to start)

When keys are not required the `Authorization` header is ignored (OpenAI clients always send
one). When they are, a missing, unknown or revoked key is a 401 in OpenAI's error shape. A key
store that cannot be read is a 503 (never open by accident), except for keys this replica found
in it within the last 10 minutes (stale-if-error: a short Redis outage does not stop known
callers; revocation is immediate whenever the store answers).
"""

from __future__ import annotations

import ipaddress
import logging
import time

from gateway.errors import ServiceUnavailable, Unauthorized
from gateway.keys import ClientKey, Grant, KeyStore, hash_key
from gateway.settings import AuthSettings, ConfigError

__all__ = ["Auth", "check_exposure", "is_loopback"]

log = logging.getLogger("coe.auth")
STALE_IF_ERROR_S = 600.0
"""How long a key found in the store stays usable while the store cannot be reached."""
MAX_SEEN = 100_000


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name or a wildcard such as 0.0.0.0: reachable from elsewhere


def check_exposure(settings: AuthSettings, host: str) -> None:
    """Refuse to serve an open API on a non-loopback address unless told so."""
    if settings.client_keys == "off" and not is_loopback(host) and not settings.allow_open:
        raise ConfigError(
            f"auth.client_keys: off on {host}, a non-loopback address, would let anyone who "
            "reaches it call every expert; create client keys (auth.client_keys: auto) or set "
            "auth.allow_open: true to serve it open on purpose"
        )


class Auth:
    """Checks one request's `Authorization` header; see the module docstring."""

    def __init__(self, store: KeyStore, settings: AuthSettings, host: str) -> None:
        self.store = store
        self.settings = settings
        self.loopback = is_loopback(host)
        self._keys_exist = False  # once true, true for good: revoked keys stay in the store
        self._count_seen: int | None = None
        self._seen: dict[str, tuple[float, ClientKey]] = {}
        """Keys found lately (hash -> when, record): used only while the store is unreachable."""

    async def required(self) -> bool:
        mode = self.settings.client_keys
        if mode != "auto":
            return mode == "required"
        if not self.loopback or self._keys_exist:
            return True
        self._keys_exist = await self._count() > 0
        return self._keys_exist

    async def grant(self, authorization: str | None) -> Grant | None:
        """What the caller may use; None when no key is required (open)."""
        if self.settings.client_keys == "off" or not await self.required():
            return None
        token = _bearer(authorization)
        if token is None:
            message = "missing 'Authorization: Bearer <API key>' header"
            if not await self._count():
                message += "; no client key exists yet: create one (POST /admin/keys, coe keys)"
            raise Unauthorized(message)
        record = await self._find(hash_key(token))
        if record is None:
            raise Unauthorized("invalid API key")
        if not record.active:
            raise Unauthorized(f"API key {record.shown} ({record.name}) was revoked")
        return record.grant()

    async def _find(self, sha256: str) -> ClientKey | None:
        """The store's record; while the store is unreachable, one it gave within
        `STALE_IF_ERROR_S` (a short Redis outage does not stop callers it already knew)."""
        now = time.monotonic()
        try:
            record = await self.store.find(sha256)
        except Exception as exc:
            seen = self._seen.get(sha256)
            if seen is not None and now - seen[0] <= STALE_IF_ERROR_S:
                return seen[1]
            raise _unreachable(exc) from exc
        if record is not None:
            if len(self._seen) >= MAX_SEEN:
                self._seen.clear()
            self._seen[sha256] = (now, record)
        return record

    async def _count(self) -> int:
        try:
            self._count_seen = await self.store.count()
        except Exception as exc:
            if self._count_seen is None:  # never read: cannot tell whether keys exist
                raise _unreachable(exc) from exc
        return self._count_seen


def _unreachable(exc: Exception) -> ServiceUnavailable:
    log.warning("client key store unreachable: %s", type(exc).__name__)
    return ServiceUnavailable("the client key store is unreachable; try again")


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
