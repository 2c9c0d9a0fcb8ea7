"""Client API keys: what a key is, how it is made and checked, and what it may use.

A key is ``coe-`` + 43 URL-safe characters (32 random bytes from `secrets`). It is shown once,
when created; stores keep only its SHA-256 (a fast hash is right for a random 256-bit secret:
nothing to brute-force, and every request checks one) and its first characters, to recognise it
in a list. A record never holds the key itself, and nothing logs it.

    key, record = new_key(KeyRequest(name="team-a", experts=["coder"]))
    await store.create(record)
    found = await store.find(hash_key(key))        # None when unknown
    found.active                                    # False once revoked

`Grant` is what an authenticated request may use: experts by name or by the categories they
serve, and fusion. A key without lists may use every expert.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Protocol

from pydantic import BaseModel, ConfigDict, Field

from registry.spec import NAME_PATTERN, ExpertSpec

__all__ = [
    "KEY_PREFIX",
    "ClientKey",
    "Grant",
    "KeyExists",
    "KeyInfo",
    "KeyNotFound",
    "KeyRequest",
    "KeyStore",
    "hash_key",
    "new_key",
]

KEY_PREFIX = "coe-"
_SHOWN = 12
"""Characters of a key kept in clear (the prefix and 8 random ones): enough to tell keys apart,
far too few to guess the other 35."""

Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class KeyRequest(BaseModel):
    """`POST /admin/keys`: a new key's name and what it may use."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="Unique among keys; names the caller in logs and usage.")
    experts: list[Name] | None = Field(
        default=None, max_length=1000, description="Experts it may use; None: any."
    )
    categories: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None,
        max_length=1000,
        description="It may also use the experts serving these router categories.",
    )
    fusion: bool = Field(default=True, description="May ask for fusion (several experts).")
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute, at most.")
    tpm: int | None = Field(
        default=None, ge=1, description="Tokens (prompt + completion) per minute, at most."
    )
    budget: float | None = Field(
        default=None,
        ge=0,
        description="Spend allowed, in the experts' cost unit (each call adds its expert's cost).",
    )


class KeyInfo(KeyRequest):
    """A key as the admin API shows it: no secret, no hash."""

    id: str = Field(pattern=r"^key_[0-9a-f]{16}$")
    shown: str = Field(description="The key's first characters, to recognise it.")
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class ClientKey(KeyInfo):
    """A stored key: its info and the SHA-256 of the key."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", repr=False)

    def info(self) -> KeyInfo:
        return KeyInfo.model_validate(self.model_dump(exclude={"sha256"}))

    def grant(self) -> Grant:
        return Grant(
            self.name,
            None if self.experts is None else frozenset(self.experts),
            None if self.categories is None else frozenset(self.categories),
            self.fusion,
            key_id=self.id,
            rpm=self.rpm,
            tpm=self.tpm,
            budget=self.budget,
        )


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(request: KeyRequest) -> tuple[str, ClientKey]:
    """A fresh key (returned once) and the record to store."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ClientKey(
        **request.model_dump(),
        id=f"key_{uuid.uuid4().hex[:16]}",
        sha256=hash_key(key),
        shown=key[:_SHOWN] + "...",
        created_at=time.time(),
    )
    return key, record


@dataclass(frozen=True)
class Grant:
    """What one authenticated caller may use (`None`: no restriction of that kind)."""

    key: str
    """The key's name."""
    experts: frozenset[str] | None = None
    categories: frozenset[str] | None = None
    fusion: bool = True
    key_id: str = ""
    rpm: int | None = None
    tpm: int | None = None
    budget: float | None = None

    @property
    def unrestricted(self) -> bool:
        return self.experts is None and self.categories is None

    def allows(self, spec: ExpertSpec | None) -> bool:
        if self.unrestricted:
            return True
        if spec is None:
            return False
        if self.experts is not None and spec.name in self.experts:
            return True
        return self.categories is not None and bool(self.categories & set(spec.categories))

    def allowed(self, specs: Iterable[ExpertSpec]) -> tuple[ExpertSpec, ...]:
        return tuple(spec for spec in specs if self.allows(spec))


class KeyExists(Exception):
    """A key with this name already exists."""


class KeyNotFound(KeyError):
    """No key with this id or name."""


class KeyStore(Protocol):
    """Where key records live: in this process, the SQLite file or Redis (`key_store`)."""

    async def open(self) -> None: ...

    async def aclose(self) -> None: ...

    async def create(self, record: ClientKey) -> None:
        """Store a new key; `KeyExists` if its name is taken."""

    async def find(self, sha256: str) -> ClientKey | None:
        """The key with this hash, revoked or not."""

    async def list(self) -> list[ClientKey]:
        """Every key, revoked ones included, oldest first."""

    async def revoke(self, ident: str) -> ClientKey:
        """Revoke the key with this id or name (idempotent); `KeyNotFound` if none."""

    async def count(self) -> int:
        """How many keys were ever created (revoked ones included)."""
