"""Background health probes: a failing remote expert leaves rotation before users find out.

Every `health.probe_interval_s` the prober adopts other replicas' breaker transitions
(`Breakers.pull`), then calls `health()` on every remote expert (`vllm`, `openai`, and
retrievers served over HTTP) at once, each bounded by `probe_timeout_s`. A failed probe counts
like a failed request (`upstream.breaker_failures` in a row open the breaker); a successful one
puts an open expert back half-open. In-process experts (local models, simulators, local
indexes) are not probed: their failures are their requests'.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from experts.base import Expert
from gateway.breaker import STATE_VALUE, Breakers
from gateway.metrics import Metrics
from gateway.pool import ExpertPool
from gateway.settings import HealthSettings
from registry.spec import ExpertKind, ExpertSpec

__all__ = ["Probe", "Prober", "probing"]

log = logging.getLogger("coe.prober")


def remote(spec: ExpertSpec) -> bool:
    if spec.kind in (ExpertKind.VLLM, ExpertKind.OPENAI):
        return True
    return spec.kind is ExpertKind.RETRIEVER and spec.endpoint is not None


@dataclass(frozen=True)
class Probe:
    healthy: bool
    detail: str
    at: float


class Prober:
    def __init__(
        self, pool: ExpertPool, breakers: Breakers, metrics: Metrics, settings: HealthSettings
    ) -> None:
        self._pool = pool
        self._breakers = breakers
        self._metrics = metrics
        self._settings = settings
        self.last: dict[str, Probe] = {}

    async def tick(self) -> None:
        """One round: adopt shared states, probe every remote expert, export the states."""
        await self._breakers.pull()
        experts = {n: e for n, e in self._pool.experts().items() if remote(e.spec)}
        await asyncio.gather(*(self._probe(name, expert) for name, expert in experts.items()))
        for name in self._pool.experts():
            state = self._breakers.state(name).state
            self._metrics.expert_state.labels(name).set(STATE_VALUE[state])
        self.last = {n: p for n, p in self.last.items() if n in experts}

    async def _probe(self, name: str, expert: Expert) -> None:
        timeout = self._settings.probe_timeout_s
        try:
            health = await asyncio.wait_for(expert.health(), timeout)
            healthy, detail = health.healthy, health.detail or "ok"
        except TimeoutError:
            healthy, detail = False, f"no answer within {timeout:g}s"
        except Exception as exc:  # health() should not raise; a broken one fails its probe
            healthy, detail = False, f"{type(exc).__name__}: {exc}"
        self.last[name] = Probe(healthy, "ok" if healthy else detail, time.time())
        self._metrics.probes.labels(name, "ok" if healthy else "failed").inc()
        if healthy:
            self._breakers.success(name, "probe")
        else:
            self._breakers.failure(name, detail, "probe")

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # a round that fails must not end the probing
                log.exception("health probe round failed")
            await asyncio.sleep(self._settings.probe_interval_s)


@contextlib.asynccontextmanager
async def probing(prober: Prober, settings: HealthSettings) -> AsyncIterator[None]:
    """Probe in the background while the block runs (not at all with an interval of 0)."""
    if settings.probe_interval_s <= 0:
        yield
        return
    task = asyncio.create_task(prober.run(), name="coe-health-probes")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
