"""Turning the registry against its host, over real HTTP: every write path refuses it.

Registrations point at link-local / cloud-metadata addresses (literal, IPv6, numeric, by a name
that resolves there), name other processes' secrets as `api_key_env`, or local model paths
outside the model directories; the admin API, `coe experts add`, config seeding and discovery
refuse them, calls re-check DNS, and a redirect to a metadata address is never followed.
Names are resolved by `fake_dns`; `tripwire` fails a test that connects beyond loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from typer.testing import CliRunner

from gateway.app import create_app
from gateway.cli import app as cli
from gateway.settings import ConfigError, SecuritySettings, load_settings
from registry import ExpertSpec, registry_from_url
from routers.embedder import Embedder
from routers.factory import build_router
from tests.gateway.conftest import Gateway, Sim, expert, run_gateway, simulator, write_config
from tests.gateway.guard_fixtures import fake_dns, tripwire
from tests.servers import serve_in_thread

__all__ = ["tripwire"]  # a fixture

METADATA = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
runner = CliRunner()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    (tmp_path / "secrets").mkdir()
    os.symlink(tmp_path / "secrets", root / "escape")
    return root


@pytest.fixture
def gw(
    tmp_path: Path, sims: dict[str, Sim], embedder: Embedder, model_dir: Path
) -> Iterator[Gateway]:
    config = write_config(
        tmp_path,
        [expert("generalist", sims["general"], ["*"])],
        security={"model_dirs": [str(model_dir)]},
    )
    with run_gateway(config, embedder) as gateway:
        yield gateway


def openai_expert(name: str, endpoint: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "openai", "endpoint": endpoint, "model": "m", **extra}


def attacks(tmp_path: Path, model_dir: Path) -> list[tuple[dict[str, Any], str]]:
    """(registration, the field its 400 must name)."""
    local = "local"
    return [
        ({"name": "a1", "kind": "vllm", "endpoint": "http://169.254.169.254/v1"}, "endpoint"),
        (openai_expert("a2", "http://[fe80::1]:8000/v1"), "endpoint"),
        (openai_expert("a3", "http://metadata.google.internal/computeMetadata/v1"), "endpoint"),
        (openai_expert("a4", "http://evil.test:8000/v1"), "endpoint"),  # resolves to metadata
        (openai_expert("a5", "http://2852039166/v1"), "endpoint"),  # 169.254.169.254 in decimal
        (openai_expert("a6", "http://[::ffff:169.254.169.254]/v1"), "endpoint"),
        (openai_expert("a7", "http://user:pw@[fd00:ec2::254]/v1"), "endpoint"),
        ({"name": "a8", "kind": "retriever", "endpoint": METADATA}, "endpoint"),
        (openai_expert("k1", "http://127.0.0.1:9/v1", api_key_env="COE_ADMIN_KEY"), "api_key_env"),
        (
            openai_expert("k2", "http://127.0.0.1:9/v1", api_key_env="AWS_SECRET_ACCESS_KEY"),
            "api_key_env",
        ),
        ({"name": "m1", "kind": local, "model": "/etc"}, "model"),
        ({"name": "m2", "kind": local, "model": str(model_dir / ".." / "secrets")}, "model"),
        ({"name": "m3", "kind": local, "model": str(model_dir / "escape")}, "model"),
        ({"name": "m4", "kind": local, "model": str(tmp_path / "models2")}, "model"),
    ]


def test_the_admin_api_refuses_registrations_against_the_host(
    gw: Gateway,
    tmp_path: Path,
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    tripwire: list[str],
) -> None:
    fake_dns(monkeypatch, {"evil.test": ["169.254.169.254"]})
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-never-sent")
    admin = f"{gw.url}/admin/experts"
    for body, param in attacks(tmp_path, model_dir):
        refused = httpx.post(admin, json=body, headers=gw.admin_headers)
        assert refused.status_code == 400, (body, refused.text)
        error = refused.json()["error"]
        assert error["param"] == param, (body, error)
        assert error["type"] == "invalid_request_error"
        assert "aws-secret-never-sent" not in refused.text
    names = [e["name"] for e in httpx.get(admin, headers=gw.admin_headers).json()]
    assert names == ["generalist"]
    assert httpx.get(f"{admin}/history", headers=gw.admin_headers).json()[0]["name"] == (
        "generalist"  # only the seeding was recorded
    )
    assert not [host for host in tripwire if not host.startswith("127.")]


def test_allowed_registrations_still_work_and_patches_are_checked(
    gw: Gateway, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPERT_GEO_KEY", "sk-geo-0123456789")
    (model_dir / "tiny").mkdir()
    admin = f"{gw.url}/admin/experts"
    for body in (
        openai_expert("geo", "http://127.0.0.1:9/v1", api_key_env="EXPERT_GEO_KEY"),
        {"name": "tiny", "kind": "local", "model": str(model_dir / "tiny"), "enabled": False},
    ):
        added = httpx.post(admin, json=body, headers=gw.admin_headers)
        assert added.status_code == 201, added.text
    for patch, param in (
        ({"endpoint": "http://169.254.169.254/v1"}, "endpoint"),
        ({"api_key_env": "COE_REGISTRY__URL"}, "api_key_env"),
    ):
        refused = httpx.patch(f"{admin}/geo", json=patch, headers=gw.admin_headers)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == param
    refused = httpx.patch(f"{admin}/tiny", json={"model": "/"}, headers=gw.admin_headers)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "model"
    geo = httpx.get(f"{admin}/geo", headers=gw.admin_headers).json()
    assert (geo["endpoint"], geo["api_key_env"]) == ("http://127.0.0.1:9/v1", "EXPERT_GEO_KEY")


def test_a_name_rebound_to_metadata_after_registration_fails_the_call(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch, tripwire: list[str]
) -> None:
    with simulator(model="m", completion_tokens=3) as upstream:
        port = httpx.URL(upstream.url).port
        names = {"rebind.test": ["127.0.0.1"]}
        fake_dns(monkeypatch, names)
        body = openai_expert("rebound", f"http://rebind.test:{port}/v1", connect_timeout_s=2)
        added = httpx.post(f"{gw.url}/admin/experts", json=body, headers=gw.admin_headers)
        assert added.status_code == 201, added.text
        names["rebind.test"] = ["169.254.169.254"]
        call = httpx.post(
            f"{gw.url}/v1/chat/completions",
            json={"model": "rebound", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert call.status_code >= 500, call.text
        assert upstream.stats.requests_received == 0
    assert not [host for host in tripwire if not host.startswith("127.")]


def test_a_redirect_to_metadata_is_not_followed(gw: Gateway, tripwire: list[str]) -> None:
    redirector = FastAPI()

    @redirector.api_route("/{path:path}", methods=["GET", "POST"])
    async def redirect(path: str) -> RedirectResponse:
        return RedirectResponse(METADATA, status_code=302)

    with serve_in_thread(redirector) as url:
        body = openai_expert("redirector", f"{url}/v1")
        added = httpx.post(f"{gw.url}/admin/experts", json=body, headers=gw.admin_headers)
        assert added.status_code == 201, added.text
        for stream in (False, True):
            call = httpx.post(
                f"{gw.url}/v1/chat/completions",
                json={
                    "model": "redirector",
                    "stream": stream,
                    "messages": [{"role": "user", "content": "hi"}],
                },
            )
            assert call.status_code == 502, call.text
            assert "302" in call.json()["error"]["message"]
    assert tripwire and all(host == "127.0.0.1" for host in tripwire)


def test_seeding_refuses_a_bad_configured_expert_naming_its_key(
    tmp_path: Path, sims: dict[str, Sim]
) -> None:
    bad = expert("leaky", sims["general"], ["*"], api_key_env="COE_ADMIN_KEY")
    settings = load_settings(write_config(tmp_path, [bad]))
    with pytest.raises(ConfigError, match=r"experts\.0\.api_key_env \(leaky\)"):
        create_app(settings)
    meta = expert("meta", sims["general"], ["*"], endpoint="http://169.254.169.254/v1")
    with pytest.raises(ConfigError, match=r"experts\.1\.endpoint \(meta\)"):
        create_app(load_settings(write_config(tmp_path, [expert("ok", sims["general"], []), meta])))


async def test_seeding_resolves_the_configured_endpoints(
    tmp_path: Path, sims: dict[str, Sim], embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name that resolves to a refused address is caught at start, before any use."""
    fake_dns(monkeypatch, {"evil.test": ["fe80::1"]})
    sneaky = expert("sneaky", sims["general"], ["*"], endpoint="http://evil.test:8000/v1")
    settings = load_settings(write_config(tmp_path, [sneaky]))
    app = create_app(settings, router=build_router(settings.router, embedder))
    with pytest.raises(ConfigError, match=r"experts\.0\.endpoint \(sneaky\).*fe80::1"):
        async with app.router.lifespan_context(app):
            pass


def test_the_cli_refuses_and_records(tmp_path: Path, sims: dict[str, Sim]) -> None:
    config = write_config(tmp_path, [], registry={"url": f"sqlite:///{tmp_path / 'r.db'}"})
    add = ["experts", "add", "-c", str(config), "--kind", "openai", "--model", "m"]
    for args, field in (
        (["x1", "--endpoint", METADATA], "endpoint"),
        (["x2", "--endpoint", "http://127.0.0.1:9/v1", "--api-key-env", "COE_ADMIN_KEY"], "api"),
        (["x3", "--endpoint", "http://[fe80::1]/v1"], "endpoint"),
    ):
        refused = runner.invoke(cli, [*add, *args])
        assert refused.exit_code == 2 and field in refused.output, refused.output
    ok = runner.invoke(cli, [*add, "geo", "--endpoint", sims["general"].url])
    assert ok.exit_code == 0, ok.output
    assert runner.invoke(cli, ["experts", "remove", "geo", "-c", str(config)]).exit_code == 0
    shown = runner.invoke(cli, ["experts", "history", "--json", "-c", str(config)])
    rows = json.loads(shown.stdout)
    assert [(r["action"], r["name"], r["actor"]) for r in rows] == [
        ("remove", "geo", "cli"),
        ("add", "geo", "cli"),
    ]
    text = runner.invoke(cli, ["experts", "history", "geo", "--limit", "1", "-c", str(config)])
    assert text.exit_code == 0 and text.stdout.count("\n") == 1 and "remove" in text.stdout


def test_a_spec_written_past_the_checks_is_not_routable(
    tmp_path: Path, sims: dict[str, Sim], embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    """A spec stored by hand (or by an older version) is refused when the pool builds it."""
    db = tmp_path / "r.db"
    config = write_config(
        tmp_path,
        [expert("generalist", sims["general"], ["*"])],
        registry={"url": f"sqlite:///{db}"},
    )
    with run_gateway(config, embedder) as gw:
        bad = ExpertSpec.model_validate(openai_expert("planted", METADATA))
        asyncio.run(_plant(f"sqlite:///{db}", bad))
        ids = [m["id"] for m in httpx.get(f"{gw.url}/v1/models").json()["data"]]
        pinned = httpx.post(
            f"{gw.url}/v1/chat/completions",
            json={"model": "planted", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert "planted" not in ids and "generalist" in ids
    assert pinned.status_code == 404
    assert "planted cannot be built" in caplog.text and "endpoint_deny" in caplog.text


async def _plant(url: str, spec: ExpertSpec) -> None:
    registry = registry_from_url(url)
    await registry.open()
    try:
        await registry.add(spec, actor="test")
    finally:
        await registry.aclose()


def test_the_built_in_defaults_are_the_field_defaults() -> None:
    assert load_settings().security == SecuritySettings()
