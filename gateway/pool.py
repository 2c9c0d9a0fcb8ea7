"""`ExpertPool`: the live `Expert` objects, kept in step with the registry.

Each request calls `sync()`, which costs one `registry.revision()` read and reloads the spec list
only when the revision moved (a write through the admin API, the `coe experts` CLI or another
replica). A new or changed spec gets a fresh `Expert`; a removed or changed one is *retired*: it
takes no new requests at once, and is closed when its last in-flight request has finished.

`lease(name)` is how a request uses an expert: it waits for the expert's start-up (model load,
model discovery), holds one of its `max_concurrency` slots, and counts it as in flight.
A small circuit breaker takes an expert that failed `breaker_failures` times in a row out of
rotation for `breaker_cooldown_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from experts.base import Expert
from experts.errors import ExpertError, ExpertUnavailable
from gateway.metrics import Metrics
from registry.base import Registry, RegistryError
from registry.spec import ExpertSpec
from routers.base import ExpertTable

__all__ = ["ExpertPool"]

log = logging.getLogger("coe.pool")

ExpertBuilder = Callable[[ExpertSpec], Expert]


@dataclass(eq=False)
class _Slot:
    spec: ExpertSpec
    expert: Expert
    semaphore: asyncio.Semaphore
    started: asyncio.Task[None] | None = None
    inflight: int = 0
    retired: bool = False
    failures: int = 0
    open_until: float = 0.0
    closers: set[asyncio.Task[None]] = field(default_factory=set)


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
    ) -> None:
        self._registry = registry
        self._build = build
        self._metrics = metrics
        self._breaker_failures = breaker_failures
        self._breaker_cooldown_s = breaker_cooldown_s
        self._slots: dict[str, _Slot] = {}
        self._table = ExpertTable(revision=-1, experts=())
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._registry_down = False

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
            if revision == self._table.revision and not force:
                return self._table
            async with self._lock:
                revision = await self._registry.revision()
                if revision != self._table.revision or force:
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
        """`names` that exist and whose circuit breaker is closed, in the same order."""
        now = time.monotonic()
        return [n for n in names if n in self._slots and self._slots[n].open_until <= now]

    def has(self, name: str) -> bool:
        return name in self._slots

    @contextlib.asynccontextmanager
    async def lease(self, name: str) -> AsyncIterator[Expert]:
        """Use one expert for one request (see the module docstring)."""
        slot = self._slots.get(name)
        if slot is None:
            raise ExpertUnavailable(f"expert {name!r} is not registered", expert=name)
        async with slot.semaphore:
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
        slot = self._slots.get(name)
        if slot is None:
            return
        if error is None:
            slot.failures = 0
            return
        self._metrics.expert_errors.labels(name, type(error).__name__).inc()
        slot.failures += 1
        if slot.failures >= self._breaker_failures:
            slot.open_until = time.monotonic() + self._breaker_cooldown_s
            log.warning(
                "expert %s out of rotation for %.0fs after %d failures",
                name,
                self._breaker_cooldown_s,
                slot.failures,
            )

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
