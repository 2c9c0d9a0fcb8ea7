"""Background health probes and shared breakers (gateway/prober.py, gateway/breaker.py): an
expert whose worker goes down leaves rotation before a user request reaches it, comes back
half-open when its probe succeeds, and its state is visible in /v1/models, /metrics and /readyz;
replicas share breaker transitions through Redis."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from experts.simulator import SimulatorConfig
from experts.simulator_app import create_simulator_app
from gateway.breaker import Breakers, RedisBreakerStore, State
from routers.embedder import Embedder
from tests.gateway.conftest import Gateway, Sim, expert, run_gateway, write_config
from tests.redis_server import REDIS_URL
from tests.servers import serve_in_thread

MATH = [{"role": "user", "content": "Solve for x: 2x + 3 = 11."}]


class Switch:
    """An ASGI wrapper: while `down`, every request gets a 503 (the worker is gone)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.down = False
        self.chats = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/chat/completions"):
            self.chats += 1
        if scope["type"] == "http" and self.down:
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": b'{"error": {"message": "down"}}'})
            return
        await self.app(scope, receive, send)


@contextmanager
def switchable() -> Iterator[tuple[str, Switch]]:
    switch = Switch(create_simulator_app(SimulatorConfig(model="math-model", completion_tokens=4)))
    with serve_in_thread(switch) as url:
        yield f"{url}/v1", switch


def remote(name: str, url: str, categories: list[str]) -> dict[str, Any]:
    return {"name": name, "kind": "vllm", "endpoint": url, "categories": categories}


def until(check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def card(gw: Gateway, name: str) -> dict[str, Any]:
    cards = httpx.get(f"{gw.url}/v1/models").json()["data"]
    found: dict[str, Any] = next(c for c in cards if c["id"] == name)
    return found


def test_a_worker_that_goes_down_leaves_rotation_before_users_notice(
    tmp_path: Path, sims: dict[str, Sim], embedder: Embedder
) -> None:
    with switchable() as (url, switch):
        experts = [
            remote("math-expert", url, ["math"]),
            expert("generalist", sims["general"], ["*"]),
        ]
        config = write_config(
            tmp_path,
            experts,
            health={"probe_interval_s": 0.1, "probe_timeout_s": 2},
            upstream={"breaker_failures": 2, "breaker_cooldown_s": 600},
        )
        with run_gateway(config, embedder) as gw:
            until(lambda: card(gw, "math-expert")["coe"]["probe"] == "ok")
            assert card(gw, "math-expert")["coe"]["state"] == "closed"
            switch.down = True
            until(lambda: card(gw, "math-expert")["coe"]["state"] == "open")
            status = card(gw, "math-expert")["coe"]
            assert "probe" in status["reason"] and "503" in status["probe"]
            before = switch.chats
            routed = httpx.post(f"{gw.url}/v1/chat/completions", json={"messages": MATH})
            assert routed.status_code == 200
            assert routed.headers["x-coe-expert"] == "generalist"
            assert "x-coe-failover-from" not in routed.headers  # no user request hit it
            assert switch.chats == before
            metrics = httpx.get(f"{gw.url}/metrics").text
            assert 'coe_expert_state{expert="math-expert"} 2.0' in metrics
            assert 'coe_expert_probes_total{expert="math-expert",result="failed"}' in metrics
            ready = httpx.get(f"{gw.url}/readyz")
            assert ready.status_code == 200  # the generalist still serves
            assert "math-expert" in ready.json()["out_of_rotation"]

            switch.down = False  # the worker is back: its probe puts it back half-open
            until(lambda: card(gw, "math-expert")["coe"]["state"] in ("half_open", "closed"))
            back = httpx.post(f"{gw.url}/v1/chat/completions", json={"messages": MATH})
            assert back.headers["x-coe-expert"] == "math-expert"
            assert card(gw, "math-expert")["coe"]["state"] == "closed"


def test_readyz_says_why_when_every_expert_is_out(tmp_path: Path, embedder: Embedder) -> None:
    with switchable() as (url, switch):
        experts = [remote("only", url, ["*"])]
        config = write_config(
            tmp_path,
            experts,
            router={"fallback": "only"},
            health={"probe_interval_s": 0.1},
            upstream={"breaker_failures": 1, "breaker_cooldown_s": 600},
        )
        with run_gateway(config, embedder) as gw:
            switch.down = True
            until(lambda: httpx.get(f"{gw.url}/readyz").status_code == 503)
            body = httpx.get(f"{gw.url}/readyz").json()
            assert body["reasons"] == ["every expert is out of rotation"]
            assert "probe" in body["out_of_rotation"]["only"]


def test_breaker_states_and_half_open() -> None:
    breakers = Breakers(failures=2, cooldown_s=0.2)
    assert breakers.failure("a", "boom") is False and breakers.available("a")
    assert breakers.failure("a", "boom") is True and not breakers.available("a")
    breakers.success("a", "request")  # a stray success while open does not close it
    assert breakers.state("a").state is State.OPEN
    time.sleep(0.25)
    assert breakers.state("a").state is State.HALF_OPEN  # cooldown over: on trial
    assert breakers.failure("a", "again") is True  # one failure on trial reopens it
    breakers.success("a", "probe")  # a probe success: back half-open at once
    assert breakers.state("a").state is State.HALF_OPEN
    breakers.success("a", "request")
    assert breakers.state("a").state is State.CLOSED


@pytest.mark.redis
async def test_replicas_share_breaker_transitions_through_redis(redis_prefix: str) -> None:
    one = Breakers(2, 60, RedisBreakerStore(REDIS_URL, redis_prefix))
    two = Breakers(2, 60, RedisBreakerStore(REDIS_URL, redis_prefix))
    try:
        one.failure("coder", "ExpertTimeout")
        one.failure("coder", "ExpertTimeout")
        await one.push()
        assert two.available("coder")
        await two.pull()
        assert not two.available("coder")
        assert two.state("coder").reason == "request: ExpertTimeout"
        two.success("coder", "probe")  # two's probe finds it back
        await two.push()
        await one.pull()
        assert one.state("coder").state is State.HALF_OPEN
    finally:
        await one.store.aclose()
        await two.store.aclose()
