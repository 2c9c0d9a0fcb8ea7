"""`MemoryRegistry`: specs in a dict, for tests and ephemeral runs.

Nothing survives the process. Several `MemoryRegistry` objects built on one `MemoryStore`
share its specs, revision and meta, the way two processes share a SQLite file or a Redis
server; `watch()` is pushed (it wakes on the write, `interval_s` is ignored).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from registry.base import ExpertExists, ExpertNotFound, RegistryError
from registry.history import (
    DEFAULT_HISTORY_MAX,
    UNKNOWN_ACTOR,
    Action,
    Change,
    new_change,
)
from registry.spec import ExpertSpec, ExpertSpecPatch

__all__ = ["MemoryRegistry", "MemoryStore"]


class MemoryStore:
    """The state that `MemoryRegistry` objects built on it share."""

    def __init__(self) -> None:
        self.specs: dict[str, ExpertSpec] = {}
        self.meta: dict[str, str] = {}
        self.revision = 0
        self.changes: list[Change] = []
        """Oldest first."""
        self.seq = 0
        self.changed = asyncio.Condition()
        """Held for every write; notified after each one."""


class MemoryRegistry:
    """A `Registry` held in memory; pass a `MemoryStore` to share it between objects."""

    def __init__(
        self, store: MemoryStore | None = None, *, history_max: int = DEFAULT_HISTORY_MAX
    ) -> None:
        self._store = store if store is not None else MemoryStore()
        self._history_max = history_max
        self._open = False

    def __repr__(self) -> str:
        return f"MemoryRegistry(store=<{len(self._store.specs)} specs>)"

    async def open(self) -> None:
        self._open = True

    async def aclose(self) -> None:
        self._open = False

    async def add(self, spec: ExpertSpec, *, actor: str = UNKNOWN_ACTOR) -> None:
        store = self._checked()
        async with store.changed:
            if spec.name in store.specs:
                raise ExpertExists(spec.name)
            store.specs[spec.name] = spec.model_copy(deep=True)
            self._bump(store, "add", spec.name, None, spec, actor)

    async def update(
        self, name: str, patch: ExpertSpecPatch, *, actor: str = UNKNOWN_ACTOR
    ) -> ExpertSpec:
        """Apply `patch`; pydantic's `ValidationError` (nothing stored) if the result is invalid."""
        store = self._checked()
        async with store.changed:
            current = store.specs.get(name)
            if current is None:
                raise ExpertNotFound(name)
            new = patch.apply(current)
            store.specs[name] = new
            self._bump(store, "update", name, current, new, actor)
        return new.model_copy(deep=True)

    async def remove(self, name: str, *, actor: str = UNKNOWN_ACTOR) -> ExpertSpec:
        store = self._checked()
        async with store.changed:
            spec = store.specs.pop(name, None)
            if spec is None:
                raise ExpertNotFound(name)
            self._bump(store, "remove", name, spec, None, actor)
        return spec

    async def history(self, name: str | None = None, limit: int = 100) -> list[Change]:
        changes = self._checked().changes
        found = [c for c in reversed(changes) if name is None or c.name == name]
        return found[:limit]

    async def get(self, name: str) -> ExpertSpec | None:
        spec = self._checked().specs.get(name)
        return None if spec is None else spec.model_copy(deep=True)

    async def list(self) -> list[ExpertSpec]:
        specs = self._checked().specs
        return [specs[name].model_copy(deep=True) for name in sorted(specs)]

    async def revision(self) -> int:
        return self._checked().revision

    async def ping(self) -> bool:
        return self._open

    async def get_meta(self, key: str) -> str | None:
        return self._checked().meta.get(key)

    async def set_meta(self, key: str, value: str) -> None:
        self._checked().meta[key] = value

    async def watch(self, interval_s: float = 0.5) -> AsyncGenerator[int, None]:
        """Yield the new revision after each write to the store (push; no polling)."""
        store = self._checked()
        last = store.revision
        while True:
            async with store.changed:
                while store.revision == last:
                    await store.changed.wait()
                last = store.revision
            yield last

    def _checked(self) -> MemoryStore:
        if not self._open:
            raise RegistryError("memory registry is not open")
        return self._store

    def _bump(
        self,
        store: MemoryStore,
        action: Action,
        name: str,
        before: ExpertSpec | None,
        after: ExpertSpec | None,
        actor: str,
    ) -> None:
        store.revision += 1
        store.seq += 1
        store.changes.append(new_change(action, name, before, after, actor, store.seq))
        del store.changes[: -self._history_max]
        store.changed.notify_all()
