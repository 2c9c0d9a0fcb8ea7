"""The `Registry` protocol: where expert specs live, and how changes are seen.

Lifecycle of a backend::

    registry = SqliteRegistry(path)      # no I/O in __init__
    await registry.open()                # connect, create schema; raises RegistryError
    await registry.add(spec, actor="cli")  # ... add / update / remove / get / list
    await registry.history(name, limit)  # the recorded changes, newest first
    rev = await registry.revision()      # cheap; changes whenever any spec changes
    async for rev in registry.watch(): ...
    await registry.aclose()

`revision()` is what makes a change made by another process (the `coe experts` CLI, another
gateway replica) visible on the next request: the gateway compares it per request and reloads
the spec list only when it moved.

Every write records a `registry.history.Change` (who: `actor`, when, the spec before and after,
secrets redacted) in the same transaction; the backend keeps the last `history_max` of them.

Exceptions::

    RegistryError                 backend unreachable or broken
    ├── ExpertExists              add() of a name already present
    └── ExpertNotFound            update()/remove() of an unknown name
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Protocol, runtime_checkable

from registry.history import UNKNOWN_ACTOR, Change
from registry.spec import ExpertSpec, ExpertSpecPatch

__all__ = ["ExpertExists", "ExpertNotFound", "Registry", "RegistryError", "poll_revisions"]


class RegistryError(Exception):
    """The registry backend failed (unreachable, corrupt, ...)."""


class ExpertExists(RegistryError):
    """An expert with this name is already registered."""


class ExpertNotFound(RegistryError, KeyError):
    """No expert with this name is registered."""


@runtime_checkable
class Registry(Protocol):
    """Stores `ExpertSpec`s; every method is a coroutine and safe to call concurrently."""

    async def open(self) -> None: ...

    async def aclose(self) -> None: ...

    async def add(self, spec: ExpertSpec, *, actor: str = UNKNOWN_ACTOR) -> None:
        """Insert a new spec; `ExpertExists` if the name is taken."""

    async def update(
        self, name: str, patch: ExpertSpecPatch, *, actor: str = UNKNOWN_ACTOR
    ) -> ExpertSpec:
        """Apply `patch` atomically; `ExpertNotFound` if unknown. Returns the new spec."""

    async def remove(self, name: str, *, actor: str = UNKNOWN_ACTOR) -> ExpertSpec:
        """Delete and return the spec; `ExpertNotFound` if unknown."""

    async def history(self, name: str | None = None, limit: int = 100) -> list[Change]:
        """The last `limit` recorded changes (of expert `name` only, when given), newest
        first."""

    async def get(self, name: str) -> ExpertSpec | None: ...

    async def list(self) -> list[ExpertSpec]:
        """All specs (enabled or not), sorted by name."""

    async def revision(self) -> int:
        """A counter that changes on every write, by any process."""

    async def ping(self) -> bool:
        """True when the backend answers (for /readyz)."""

    async def get_meta(self, key: str) -> str | None:
        """Small backend-level flags, e.g. whether config seeding already happened."""

    async def set_meta(self, key: str, value: str) -> None: ...

    def watch(self, interval_s: float = 0.5) -> AsyncGenerator[int, None]:
        """Yield the new revision each time it changes."""


async def poll_revisions(registry: Registry, interval_s: float) -> AsyncGenerator[int, None]:
    """A `watch()` built on `revision()` polling, for backends without push."""
    last = await registry.revision()
    while True:
        await asyncio.sleep(interval_s)
        current = await registry.revision()
        if current != last:
            last = current
            yield current
