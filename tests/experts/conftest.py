"""Fixtures for the expert tests: a shared AsyncClient, spec builders, a simulator on a port."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from experts.simulator import SimulatorConfig, SimulatorStats
from experts.simulator_app import create_simulator_app
from registry.spec import ExpertKind, ExpertSpec
from tests.servers import serve_in_thread


@dataclass(frozen=True)
class RunningSimulator:
    """A simulator app served over real HTTP on 127.0.0.1."""

    url: str
    stats: SimulatorStats

    @property
    def endpoint(self) -> str:
        return f"{self.url}/v1"


StartSimulator = Callable[..., RunningSimulator]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def start_simulator() -> Iterator[StartSimulator]:
    """`start_simulator(**config)` serves a simulator for the rest of the test."""
    with contextlib.ExitStack() as stack:

        def start(**config: Any) -> RunningSimulator:
            app = create_simulator_app(SimulatorConfig(**config))
            url = stack.enter_context(serve_in_thread(app))
            return RunningSimulator(url=url, stats=app.state.stats)

        yield start


def make_spec(**fields: Any) -> ExpertSpec:
    """An ExpertSpec with test defaults (kind openai, a model, an endpoint)."""
    base: dict[str, Any] = {
        "name": "e1",
        "kind": ExpertKind.OPENAI,
        "endpoint": "http://upstream.test/v1",
        "model": "m1",
    }
    return ExpertSpec.model_validate(base | fields)


async def wait_for(condition: Callable[[], bool], *, timeout_s: float = 10.0) -> bool:
    """Poll `condition` until it holds or `timeout_s` passes; whether it held (a bounded
    wait for something another thread does, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True
