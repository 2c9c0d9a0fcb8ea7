"""`ExpertPool`: registry sync, retiring experts after their in-flight requests, the breaker."""

from __future__ import annotations

import asyncio

import pytest

from experts.base import Expert
from experts.chat import ChatRequest, Message
from experts.errors import ExpertUnavailable
from experts.simulator import SimulatedExpert
from gateway.metrics import Metrics
from gateway.pool import ExpertPool
from registry.base import RegistryError
from registry.memory import MemoryRegistry
from registry.spec import ExpertSpec, ExpertSpecPatch


class Recorder:
    """Builds in-process simulator experts and records which were closed."""

    def __init__(self) -> None:
        self.closed: list[str] = []

    def build(self, spec: ExpertSpec) -> Expert:
        expert = SimulatedExpert(spec)
        closed = self.closed

        async def aclose() -> None:
            closed.append(spec.name)

        expert.aclose = aclose  # type: ignore[method-assign]
        return expert


Setup = tuple[MemoryRegistry, ExpertPool, Recorder]


def sim(name: str, **options: object) -> ExpertSpec:
    return ExpertSpec(name=name, kind="simulator", categories=["*"], options=options)


class FlakyRegistry(MemoryRegistry):
    down = False

    async def revision(self) -> int:
        if self.down:
            raise RegistryError("connection refused")
        return await super().revision()


@pytest.fixture
async def setup() -> Setup:
    registry = FlakyRegistry()
    await registry.open()
    recorder = Recorder()
    pool = ExpertPool(
        registry, recorder.build, Metrics(), breaker_failures=2, breaker_cooldown_s=60
    )
    return registry, pool, recorder


async def test_sync_follows_the_registry(setup: Setup) -> None:
    registry, pool, recorder = setup
    await registry.add(sim("a"))
    assert (await pool.sync()).names() == ("a",)
    await registry.add(sim("b"))
    await registry.update("a", ExpertSpecPatch(enabled=False))
    assert (await pool.sync()).names() == ("b",)
    await asyncio.sleep(0)  # let the close task run
    await asyncio.sleep(0)
    assert recorder.closed == ["a"]


async def test_removed_expert_closes_only_after_its_inflight_request(setup: Setup) -> None:
    registry, pool, recorder = setup
    await registry.add(sim("slow", ttft_s=0.2, completion_tokens=3))
    await pool.sync()
    request = ChatRequest(messages=(Message("user", "hi"),))

    async def use() -> str:
        async with pool.lease("slow") as expert:
            return (await expert.chat(request)).text

    task = asyncio.create_task(use())
    await asyncio.sleep(0.05)  # the request is in flight
    await registry.remove("slow")
    await pool.sync()
    assert not pool.has("slow")
    with pytest.raises(ExpertUnavailable):  # no new request gets it
        async with pool.lease("slow"):
            pass
    assert recorder.closed == []  # still serving the old request
    assert await task  # which finishes normally
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert recorder.closed == ["slow"]


async def test_breaker_takes_a_failing_expert_out_of_rotation(setup: Setup) -> None:
    registry, pool, _ = setup
    await registry.add(sim("a"))
    await registry.add(sim("b"))
    await pool.sync()
    failure = ExpertUnavailable("down", expert="a")
    pool.record("a", failure)
    assert pool.available(["a", "b"]) == ["a", "b"]  # one failure is not enough
    pool.record("a", failure)
    assert pool.available(["a", "b"]) == ["b"]
    pool.record("b", failure)
    pool.record("b", None)  # a success resets the count
    pool.record("b", failure)
    assert pool.available(["a", "b"]) == ["b"]


async def test_registry_outage_keeps_the_last_table(setup: Setup) -> None:
    registry, pool, _ = setup
    assert isinstance(registry, FlakyRegistry)
    registry.down = True
    with pytest.raises(RegistryError):  # nothing known yet: nothing to serve
        await pool.sync()
    registry.down = False
    await registry.add(sim("a"))
    assert (await pool.sync()).names() == ("a",)
    registry.down = True
    assert (await pool.sync()).names() == ("a",)
    registry.down = False
    await registry.add(sim("b"))
    assert (await pool.sync()).names() == ("a", "b")


async def test_misconfigured_spec_is_skipped_not_fatal(setup: Setup) -> None:
    registry, pool, _ = setup
    await registry.add(sim("good"))
    await registry.add(sim("bad", failure_rate=7))  # invalid simulator options: ValueError
    assert (await pool.sync()).names() == ("good",)
