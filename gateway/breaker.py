"""Circuit breakers per expert, fed by requests and background probes, shared by replicas.

States::

    closed     in rotation; `failures` failed calls or probes in a row -> open
    open       out of rotation until `cooldown_s` has passed (then half-open), or until a probe
               succeeds (then half-open at once: it is back before a user finds out)
    half_open  in rotation on trial: the next success closes it, the next failure opens it

Each replica counts its own consecutive failures; a *transition* is written to the shared
`BreakerStore` (Redis with the Redis registry, else this process) and adopted by the other
replicas at their next `pull()` (every probe tick), so one replica's probe takes an expert out
of rotation everywhere. The store failing is logged, never fatal: each replica then decides
alone.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from typing import Protocol

from gateway.redis_client import redis_client
from registry.redis import DEFAULT_PREFIX
from registry.urls import split_prefix

__all__ = ["BreakerState", "BreakerStore", "Breakers", "State", "breaker_store"]

log = logging.getLogger("coe.breaker")


class State(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


STATE_VALUE = {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2}
"""The `coe_expert_state` gauge's values."""


@dataclass(frozen=True)
class BreakerState:
    state: State = State.CLOSED
    until: float = 0.0
    """Epoch seconds an open breaker stays open (then it is half-open)."""
    reason: str = ""
    changed_at: float = 0.0

    def now(self, at: float) -> BreakerState:
        """This state as of `at`: an open breaker past its cooldown is half-open."""
        if self.state is State.OPEN and self.until <= at:
            return replace(self, state=State.HALF_OPEN, reason=f"cooldown over ({self.reason})")
        return self

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> BreakerState:
        data = json.loads(raw)
        return cls(
            State(data["state"]),
            float(data["until"]),
            str(data["reason"]),
            float(data["changed_at"]),
        )


class BreakerStore(Protocol):
    async def put(self, name: str, state: BreakerState) -> None: ...

    async def all(self) -> dict[str, BreakerState]: ...

    async def aclose(self) -> None: ...


class MemoryBreakerStore:
    def __init__(self) -> None:
        self.states: dict[str, BreakerState] = {}

    async def put(self, name: str, state: BreakerState) -> None:
        self.states[name] = state

    async def all(self) -> dict[str, BreakerState]:
        return dict(self.states)

    async def aclose(self) -> None:
        return None


class RedisBreakerStore:
    """Hash ``{prefix}breakers``: expert name -> state JSON."""

    def __init__(self, url: str, prefix: str) -> None:
        self._client = redis_client(url)
        self._key = f"{prefix}breakers"

    async def put(self, name: str, state: BreakerState) -> None:
        await self._client.hset(self._key, name, state.to_json())

    async def all(self) -> dict[str, BreakerState]:
        raw: dict[str, str] = await self._client.hgetall(self._key)  # type: ignore[assignment]
        return {name: BreakerState.from_json(value) for name, value in raw.items()}

    async def aclose(self) -> None:
        await self._client.aclose()


def breaker_store(registry_url: str) -> BreakerStore:
    """Shared through Redis when the registry lives there, else kept in this process."""
    if registry_url.partition(":")[0].lower() in ("redis", "rediss"):
        url, prefix = split_prefix(registry_url)
        return RedisBreakerStore(url, DEFAULT_PREFIX if prefix is None else prefix)
    return MemoryBreakerStore()


class Breakers:
    """Every expert's breaker (module docstring). Sync methods: called on the request path."""

    def __init__(self, failures: int, cooldown_s: float, store: BreakerStore | None = None) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self.store = store or MemoryBreakerStore()
        self._states: dict[str, BreakerState] = {}
        self._counts: dict[str, int] = {}
        self._pending: dict[str, BreakerState] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def state(self, name: str) -> BreakerState:
        return self._states.get(name, BreakerState()).now(time.time())

    def available(self, name: str) -> bool:
        return self.state(name).state is not State.OPEN

    def success(self, name: str, source: str = "request") -> None:
        self._counts[name] = 0
        current = self.state(name)
        if current.state is State.HALF_OPEN:
            self._set(name, BreakerState(State.CLOSED, reason=f"{source} succeeded"))
        elif current.state is State.OPEN and source == "probe":
            self._set(name, BreakerState(State.HALF_OPEN, reason="probe succeeded"))

    def failure(self, name: str, why: str, source: str = "request") -> bool:
        """Count a failure; True when it opened the breaker."""
        count = self._counts.get(name, 0) + 1
        self._counts[name] = count
        current = self.state(name)
        if current.state is State.OPEN:
            return False
        if current.state is State.HALF_OPEN or count >= self.failures:
            until = time.time() + self.cooldown_s
            self._set(name, BreakerState(State.OPEN, until, f"{source}: {why}"))
            log.warning(
                "expert %s out of rotation for %.0fs: %s: %s", name, self.cooldown_s, source, why
            )
            return True
        return False

    def forget(self, names: set[str]) -> None:
        """Drop the breakers of experts no longer registered."""
        for name in list(self._states):
            if name not in names:
                self._states.pop(name, None)
                self._counts.pop(name, None)

    def _set(self, name: str, state: BreakerState) -> None:
        state = replace(state, changed_at=time.time())
        self._states[name] = state
        self._pending[name] = state
        try:
            task = asyncio.get_running_loop().create_task(self.push())
        except RuntimeError:  # no loop (a sync test): pushed at the next push()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def push(self) -> None:
        """Write this replica's transitions to the shared store."""
        pending, self._pending = self._pending, {}
        for name, state in pending.items():
            try:
                await self.store.put(name, state)
            except Exception as exc:
                log.warning(
                    "breaker store unreachable (%s): state of %s kept here",
                    type(exc).__name__,
                    name,
                )

    async def pull(self) -> None:
        """Adopt other replicas' newer transitions."""
        try:
            shared = await self.store.all()
        except Exception as exc:
            log.warning("breaker store unreachable (%s): deciding alone", type(exc).__name__)
            return
        for name, state in shared.items():
            mine = self._states.get(name)
            if mine is None or state.changed_at > mine.changed_at:
                self._states[name] = state
