"""`ExpertPool`: the live `Expert` objects, kept in step with the registry.

Each request calls `sync()`, which costs one `registry.revision()` read and reloads the spec list
only when the revision moved (a write through the admin API, the `coe experts` CLI or another
replica). A new or changed spec gets a fresh `Expert`; a removed or changed one is *retired*: it
takes no new requests at once, and is closed when its last in-flight request has finished.

`lease(name)` is how a request uses an expert: it waits for the expert's start-up (model load,
model discovery), holds one of its `max_concurrency` slots, and counts it as in flight.
A circuit breaker per expert (`gateway/breaker.py`, fed by requests here and by the background
prober) takes an expert that failed `breaker_failures` times in a row out of rotation for
`breaker_cooldown_s`, then lets it back half-open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from experts.base import Expert
from experts.errors import ExpertBusy, ExpertError, ExpertUnavailable
from gateway.breaker import Breakers
from gateway.metrics import Metrics
from gateway.slots import MemorySlots, Slots
from registry.base import Registry, RegistryError
from registry.spec import ExpertSpec
from routers.base import ExpertTable

__all__ = ["INSTANCE_MARKER", "RESTORED_MARKER", "ExpertPool", "mark_registry"]

log = logging.getLogger("coe.pool")
RESTORED_MARKER = "restored"
INSTANCE_MARKER = "instance"
"""Registry meta key holding a random id written when the registry is first used: it vanishes
with the data (a Redis restarted without persistence)."""

ExpertBuilder = Callable[[ExpertSpec], Expert]


@dataclass(eq=False)
class _Slot:
    spec: ExpertSpec
    expert: Expert
    semaphore: asyncio.Semaphore
    started: asyncio.Task[None] | None = None
    inflight: int = 0
    retired: bool = False
    closers: set[asyncio.Task[None]] = field(default_factory=set)


async def mark_registry(registry: Registry, *, restored: bool = False) -> None:
    """Give a registry its instance marker if it has none (a new one, or one that lost its
    data): the marker vanishing tells the pools using it that the data went too. After a
    restore (`restored`), the marker is also recorded as the restored one: every replica that
    lost the registry then trusts it again."""
    marker = await registry.get_meta(INSTANCE_MARKER)
    if marker is None:
        marker = uuid.uuid4().hex
        await registry.set_meta(INSTANCE_MARKER, marker)
    if restored:
        await registry.set_meta(RESTORED_MARKER, marker)


class ExpertPool:
    """Builds, leases and retires experts; see the module docstring."""

    def __init__(
        self,
        registry: Registry,
        build: ExpertBuilder,
        metrics: Metrics,
        *,
        breaker_failures: int = 3,
        breaker_cooldown_s: float = 10.0,
        breakers: Breakers | None = None,
        slots: Slots | None = None,
    ) -> None:
        self._registry = registry
        self._build = build
        self._metrics = metrics
        self.breakers = breakers or Breakers(breaker_failures, breaker_cooldown_s)
        self._global = slots or MemorySlots()
        self._slots: dict[str, _Slot] = {}
        self._table = ExpertTable(revision=-1, experts=())
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._registry_down = False
        self._marker: str | None = None
        self.lost: str | None = None
        """Why the registry is not trusted (it lost its data), or None."""

    @property
    def table(self) -> ExpertTable:
        return self._table

    async def sync(self, *, force: bool = False) -> ExpertTable:
        """Bring the pool up to the registry's revision; return the enabled experts.

        If the registry stops answering after the first successful load, the pool keeps
        serving the last table it had (logged once per outage) instead of failing requests.
        """
        try:
            revision = await self._registry.revision()
            if revision == self._table.revision and not force and self.lost is None:
                return self._table
            async with self._lock:  # while lost: checked on every sync, whatever the revision
                revision = await self._registry.revision()
                changed = revision != self._table.revision or force or self.lost is not None
                if changed and not await self._lost(revision):
                    self._apply(await self._registry.list(), revision)
        except RegistryError as exc:
            if self._table.revision < 0:
                raise
            if not self._registry_down:
                log.error("registry unreachable, serving the last known experts: %s", exc)
            self._registry_down = True
            return self._table
        if self._registry_down:
            log.info("registry reachable again")
            self._registry_down = False
        return self._table

    async def _lost(self, revision: int) -> bool:
        """True when the registry lost its data (its revision went backwards or its instance
        marker changed: e.g. Redis restarted without persistence): the pool then keeps its
        last good table until an operator restores the registry (`coe experts restore`)."""
        marker = await self._registry.get_meta(INSTANCE_MARKER)
        if self._table.revision < 0:
            self._marker = marker
            return False
        if self.lost is not None:
            if marker is None or marker != await self._registry.get_meta(RESTORED_MARKER):
                return True
            self._trust(marker)  # restored (through any replica): trust it as it is now
            return False
        if revision >= self._table.revision and marker == self._marker:
            return False
        self.lost = (
            f"revision went from {self._table.revision} to {revision}"
            if revision < self._table.revision
            else "its instance marker changed"
        )
        self._metrics.registry_lost.set(1)
        log.error(
            "the registry lost its data (%s): serving the last good table of %d experts "
            "until it is restored (coe experts restore)",
            self.lost,
            len(self._table.experts),
        )
        return True

    def _trust(self, marker: str) -> None:
        self._marker = marker
        self.lost = None
        self._metrics.registry_lost.set(0)
        log.info("registry restored: serving it again")

    async def restored(self) -> ExpertTable:
        """After a restore through this replica: the registry as it is now."""
        await self.sync(force=True)
        return self._table

    def _apply(self, specs: Sequence[ExpertSpec], revision: int) -> None:
        enabled = {s.name: s for s in specs if s.enabled}
        for name, slot in list(self._slots.items()):
            if enabled.get(name) != slot.spec:
                del self._slots[name]
                self._retire(slot)
        for name, spec in enabled.items():
            if name not in self._slots:
                try:
                    self._slots[name] = self._new_slot(spec)
                except ValueError as exc:  # misconfigured (e.g. its API key variable is unset)
                    log.error("expert %s cannot be built and is not routable: %s", name, exc)
        self._table = ExpertTable(
            revision=revision, experts=tuple(self._slots[n].spec for n in sorted(self._slots))
        )
        self._metrics.experts.set(len(self._slots))
        self.breakers.forget(set(self._slots))
        log.info("registry revision %s: %d enabled experts", revision, len(self._slots))

    def _new_slot(self, spec: ExpertSpec) -> _Slot:
        slot = _Slot(spec, self._build(spec), asyncio.Semaphore(spec.max_concurrency))
        slot.started = asyncio.create_task(slot.expert.start(), name=f"start-{spec.name}")
        slot.started.add_done_callback(_log_start_failure(spec.name))
        return slot

    def _retire(self, slot: _Slot) -> None:
        slot.retired = True
        if slot.inflight == 0:
            self._close_later(slot)

    def _close_later(self, slot: _Slot) -> None:
        async def close() -> None:
            if slot.started is not None and not slot.started.done():
                slot.started.cancel()
            try:
                await slot.expert.aclose()
            except Exception:
                log.exception("closing expert %s failed", slot.spec.name)

        task = asyncio.create_task(close(), name=f"close-{slot.spec.name}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def check(self, spec: ExpertSpec) -> None:
        """Build `spec` once to surface configuration errors (`ValueError`) before storing it."""
        expert = self._build(spec)
        self._close_later(_Slot(spec, expert, asyncio.Semaphore(1)))

    def available(self, names: Sequence[str]) -> list[str]:
        """`names` that exist and whose circuit breaker is not open, in the same order."""
        return [n for n in names if n in self._slots and self.breakers.available(n)]

    def experts(self) -> dict[str, Expert]:
        """The live experts by name (the background prober's view)."""
        return {name: slot.expert for name, slot in self._slots.items() if not slot.retired}

    def has(self, name: str) -> bool:
        return name in self._slots

    @contextlib.asynccontextmanager
    async def lease(self, name: str) -> AsyncIterator[Expert]:
        """Use one expert for one request (see the module docstring)."""
        slot = self._slots.get(name)
        if slot is None:
            raise ExpertUnavailable(f"expert {name!r} is not registered", expert=name)
        async with slot.semaphore, self._global_slot(slot.spec):
            await self._await_started(slot)
            slot.inflight += 1
            self._metrics.inflight.labels(name).inc()
            try:
                yield slot.expert
            finally:
                slot.inflight -= 1
                self._metrics.inflight.labels(name).dec()
                if slot.retired and slot.inflight == 0:
                    self._close_later(slot)

    @contextlib.asynccontextmanager
    async def _global_slot(self, spec: ExpertSpec) -> AsyncIterator[None]:
        """One of the expert's `global_max_concurrency` slots over every replica, if it has a
        cap; `ExpertBusy` (the next candidate is tried) when they are all taken."""
        cap = spec.global_max_concurrency
        if cap is None:
            yield
            return
        token = await self._global.acquire(spec.name, cap, spec.timeout_s + 30)
        if token is None:
            raise ExpertBusy(
                f"expert {spec.name!r} has {cap} requests in flight (global_max_concurrency)",
                expert=spec.name,
            )
        try:
            yield
        finally:
            await self._global.release(spec.name, token)

    async def _await_started(self, slot: _Slot) -> None:
        assert slot.started is not None
        try:
            await asyncio.shield(slot.started)
        except asyncio.CancelledError:
            if slot.started.cancelled() and not slot.retired:
                slot.started = asyncio.create_task(slot.expert.start())
            raise
        except Exception as exc:
            # Start-up failed (worker down, weights missing): try again on the next request.
            slot.started = asyncio.create_task(slot.expert.start())
            slot.started.add_done_callback(_log_start_failure(slot.spec.name))
            if isinstance(exc, ExpertError):
                raise
            raise ExpertUnavailable(
                f"expert {slot.spec.name!r} failed to start: {type(exc).__name__}: {exc}",
                expert=slot.spec.name,
            ) from exc

    def record(self, name: str, error: BaseException | None) -> None:
        """Feed the circuit breaker with one request's outcome."""
        if name not in self._slots:
            return
        if error is None:
            self.breakers.success(name)
            return
        if isinstance(error, ExpertBusy):  # at its cap: busy, not failing
            return
        self._metrics.expert_errors.labels(name, type(error).__name__).inc()
        self.breakers.failure(name, type(error).__name__)

    async def aclose(self) -> None:
        for slot in list(self._slots.values()):
            self._retire(slot)
        self._slots.clear()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


def _log_start_failure(name: str) -> Callable[[asyncio.Task[None]], None]:
    def callback(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.warning("expert %s failed to start: %s", name, task.exception())

    return callback
