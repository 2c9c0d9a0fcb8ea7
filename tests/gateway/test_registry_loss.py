"""A Redis that comes back empty (restarted without persistence), tried as an operator would:
a redis-server of the test's own is killed and started again on the same port. Every replica
keeps serving its last good table, says so in /readyz and /metrics, and trusts the registry
again only after `coe experts restore` (through any replica)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from gateway.cli import app as cli
from routers.embedder import Embedder
from tests.gateway.conftest import (
    ADMIN_KEY,
    Gateway,
    Sim,
    run_gateway,
    standard_experts,
    two_replicas,
    write_config,
)

MATH = [{"role": "user", "content": "Solve for x: 2x + 3 = 11."}]


class OwnRedis:
    """A redis-server that keeps nothing on disk, on a free loopback port."""

    def __init__(self, workdir: Path, persistent: bool = False) -> None:
        self.persistent = persistent
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else []
        self.process = subprocess.Popen(
            ["redis-server", *args, "--dir", str(self.workdir)], stdout=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # as a crash: nothing is saved
        self.process.wait()


def _serve(tmp_path: Path, persistent: bool) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    server = OwnRedis(tmp_path, persistent=persistent)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """Keeps nothing: comes back empty after a restart."""
    yield from _serve(tmp_path, persistent=False)


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """Append-only file, fsync on every write: comes back with its data."""
    yield from _serve(tmp_path, persistent=True)


def registry_status(gw: Gateway) -> str:
    response = httpx.get(f"{gw.url}/readyz")
    assert response.status_code == 200, response.text  # still ready: it serves
    status: str = response.json()["registry"]
    return status


def test_an_empty_redis_after_a_restart_is_noticed_and_restored_on_request(
    tmp_path: Path,
    sims: dict[str, Sim],
    embedder: Embedder,
    own_redis: OwnRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    experts = standard_experts(sims)
    with two_replicas(tmp_path, embedder, experts, own_redis.url) as (a, b):
        names = {"auto", "math-expert", "code-expert", "generalist"}
        assert {m["id"] for m in httpx.get(f"{a.url}/v1/models").json()["data"]} == names

        own_redis.kill()
        own_redis.start()  # back, empty

        for gw in (a, b):
            answer = httpx.post(f"{gw.url}/v1/chat/completions", json={"messages": MATH})
            assert answer.status_code == 200 and answer.headers["x-coe-expert"] == "math-expert"
            assert {m["id"] for m in httpx.get(f"{gw.url}/v1/models").json()["data"]} == names
            assert registry_status(gw).startswith("lost its data (revision went from")
            assert "coe_registry_lost 1.0" in httpx.get(f"{gw.url}/metrics").text

        monkeypatch.setenv("COE_ADMIN_KEY", ADMIN_KEY)
        restored = CliRunner().invoke(cli, ["experts", "restore", "--url", a.url])
        assert restored.exit_code == 0, restored.output
        result = json.loads(restored.stdout)
        assert sorted(result["restored"]) == ["code-expert", "generalist", "math-expert"]
        assert result["was_lost"].startswith("revision went from")

        for gw in (a, b):  # b trusts the restored registry too, at its next request
            assert {m["id"] for m in httpx.get(f"{gw.url}/v1/models").json()["data"]} == names
            assert registry_status(gw) == "ok"
            assert "coe_registry_lost 0.0" in httpx.get(f"{gw.url}/metrics").text
        listed = httpx.get(f"{b.url}/admin/experts", headers=b.admin_headers).json()
        assert sorted(e["name"] for e in listed) == ["code-expert", "generalist", "math-expert"]


def test_restore_from_a_backup_file_names_a_bad_field(tmp_path: Path, sims: dict[str, Sim]) -> None:
    db = tmp_path / "registry.db"
    config = write_config(tmp_path, [], registry={"url": f"sqlite:///{db}"})
    backup = tmp_path / "backup.json"
    backup.write_text(json.dumps(standard_experts(sims)))
    runner = CliRunner()
    done = runner.invoke(cli, ["experts", "restore", "--file", str(backup), "-c", str(config)])
    assert done.exit_code == 0, done.output
    assert len(json.loads(done.stdout)["restored"]) == 3
    again = runner.invoke(cli, ["experts", "restore", "--file", str(backup), "-c", str(config)])
    assert sorted(json.loads(again.stdout)["kept"]) == ["code-expert", "generalist", "math-expert"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps([{"name": "x", "kind": "vllm", "cost": -1}]))
    refused = runner.invoke(cli, ["experts", "restore", "--file", str(broken), "-c", str(config)])
    assert refused.exit_code == 2
    assert "broken.json: 0" in refused.output


def test_redis_stopped_and_restarted_under_traffic(
    tmp_path: Path, sims: dict[str, Sim], embedder: Embedder, durable_redis: OwnRedis
) -> None:
    """Keys required, traffic all along: while Redis is down the gateway serves its last good
    table (and the keys it knew); once Redis is back it resyncs, and nothing failed."""
    config = write_config(
        tmp_path,
        standard_experts(sims),
        registry={"url": durable_redis.url},
        auth={"client_keys": "required"},
    )
    with run_gateway(config, embedder) as gw:
        key = httpx.post(
            f"{gw.url}/admin/keys", json={"name": "steady"}, headers=gw.admin_headers
        ).json()["key"]
        statuses: list[int] = []
        stop = threading.Event()

        def traffic() -> None:
            with httpx.Client(timeout=30, headers={"authorization": f"Bearer {key}"}) as client:
                while not stop.is_set():
                    body = {"messages": MATH}
                    statuses.append(
                        client.post(f"{gw.url}/v1/chat/completions", json=body).status_code
                    )
                    time.sleep(0.05)

        worker = threading.Thread(target=traffic)
        worker.start()
        time.sleep(0.5)
        durable_redis.kill()
        time.sleep(1.5)  # down: served from the last good table
        during = len(statuses)
        durable_redis.start()  # back, with its data (append-only file)
        time.sleep(1.0)
        stop.set()
        worker.join()
        assert len(statuses) > during > 5
        assert set(statuses) == {200}, statuses
        assert registry_status(gw) == "ok"  # not mistaken for a loss: its data came back
        added = httpx.post(  # and it resyncs: a new expert is routable at once
            f"{gw.url}/admin/experts",
            json={
                "name": "late",
                "kind": "vllm",
                "endpoint": sims["code"].url,
                "categories": ["x"],
            },
            headers=gw.admin_headers,
        )
        assert added.status_code == 201, added.text
        models = httpx.get(f"{gw.url}/v1/models", headers={"authorization": f"Bearer {key}"})
        assert "late" in {m["id"] for m in models.json()["data"]}
