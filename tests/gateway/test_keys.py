"""Client API keys: created, used, restricted and revoked through the admin API and `coe keys`;
open only where the configuration says so; shared by replicas through Redis."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from gateway.auth import check_exposure, is_loopback
from gateway.cli import app as cli
from gateway.settings import AuthSettings, ConfigError
from routers.embedder import Embedder
from tests.gateway.conftest import (
    ADMIN_KEY,
    Gateway,
    Sim,
    expert,
    run_gateway,
    standard_experts,
    two_replicas,
    write_config,
)
from tests.redis_server import REDIS_URL

MATH = [{"role": "user", "content": "Solve for x: 2x + 3 = 11."}]


def create(gw: Gateway, name: str, **grant: Any) -> str:
    response = httpx.post(
        f"{gw.url}/admin/keys", json={"name": name, **grant}, headers=gw.admin_headers
    )
    assert response.status_code == 201, response.text
    key = response.json()["key"]
    assert isinstance(key, str) and key.startswith("coe-") and len(key) > 40
    return key


def chat(gw: Gateway, key: str | None, messages: list[dict[str, str]], **extra: Any) -> Any:
    headers = {} if key is None else {"authorization": f"Bearer {key}"}
    body = {"messages": messages, **extra}
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers)


def models(gw: Gateway, key: str) -> list[str]:
    response = httpx.get(f"{gw.url}/v1/models", headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return [m["id"] for m in response.json()["data"]]


def assert_error(response: httpx.Response, status: int, type_: str, says: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == type_ and says in error["message"], error


def test_open_on_loopback_until_the_first_key_then_required(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    assert chat(gateway, None, MATH).status_code == 200  # no key exists: open on loopback
    with caplog.at_level(logging.DEBUG):
        key = create(gateway, "team-a")
        missing = chat(gateway, None, MATH)
        assert_error(missing, 401, "authentication_error", "missing 'Authorization: Bearer")
        assert_error(chat(gateway, "coe-not-a-key", MATH), 401, "authentication_error", "invalid")
        assert chat(gateway, key, MATH).status_code == 200
        assert httpx.get(f"{gateway.url}/v1/models").status_code == 401
        route = httpx.post(f"{gateway.url}/v1/route", json={"query": "2 + 2"})
        assert route.status_code == 401
    listed = httpx.get(f"{gateway.url}/admin/keys", headers=gateway.admin_headers).json()
    assert [k["name"] for k in listed] == ["team-a"]
    assert key not in json.dumps(listed) and "sha256" not in listed[0]
    assert listed[0]["shown"] == key[:12] + "..."
    assert key not in caplog.text  # never logged

    revoked = httpx.delete(f"{gateway.url}/admin/keys/team-a", headers=gateway.admin_headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert_error(chat(gateway, key, MATH), 401, "authentication_error", "was revoked")
    # revoking every key does not open the gateway again
    assert_error(chat(gateway, None, MATH), 401, "authentication_error", "missing")


def test_admin_key_api_refuses_bad_input(gateway: Gateway) -> None:
    admin = f"{gateway.url}/admin/keys"
    assert httpx.post(admin, json={"name": "x"}).status_code == 401  # no admin key
    create(gateway, "dup")
    again = httpx.post(admin, json={"name": "dup"}, headers=gateway.admin_headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "key_exists"
    bad = httpx.post(admin, json={"name": "no spaces"}, headers=gateway.admin_headers)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "name"
    unknown = httpx.delete(f"{admin}/nobody", headers=gateway.admin_headers)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "key_not_found"


def test_a_key_uses_only_its_experts_and_fusion_if_allowed(gateway: Gateway) -> None:
    coder = create(gateway, "coders", experts=["code-expert"], fusion=False)
    mathy = create(gateway, "mathematicians", categories=["math"])
    assert models(gateway, coder) == ["auto", "code-expert"]
    assert models(gateway, mathy) == ["auto", "math-expert"]

    pinned = chat(gateway, coder, MATH, model="math-expert")
    assert_error(pinned, 403, "permission_error", "may not use the model 'math-expert'")
    assert pinned.json()["error"]["param"] == "model"
    assert chat(gateway, coder, MATH, model="code-expert").status_code == 200
    routed = chat(gateway, coder, MATH)  # the router's order, without what it may not use
    assert routed.status_code == 200 and routed.headers["x-coe-expert"] == "code-expert"
    future = create(gateway, "future", experts=["not-yet-registered"])
    assert models(gateway, future) == ["auto"]
    nothing = chat(gateway, future, MATH)
    assert_error(nothing, 403, "permission_error", "may use no expert for this request")
    allowed = chat(gateway, mathy, MATH)
    assert allowed.status_code == 200 and allowed.headers["x-coe-expert"] == "math-expert"

    fused = chat(gateway, coder, MATH, model="code-expert", coe={"fusion": "vote"})
    assert_error(fused, 403, "permission_error", "may not ask for fusion")
    assert fused.json()["error"]["param"] == "coe.fusion"
    route = httpx.post(
        f"{gateway.url}/v1/route",
        json={"query": "Solve for x: 2x + 3 = 11."},
        headers={"authorization": f"Bearer {mathy}"},
    ).json()
    assert route["selected"] == ["math-expert"]


def test_keys_required_on_a_public_address_even_before_the_first(
    tmp_path: Path, sims: dict[str, Sim], embedder: Embedder
) -> None:
    config = write_config(tmp_path, standard_experts(sims))
    with run_gateway(config, embedder, server={"host": "0.0.0.0"}) as gw:
        refused = chat(gw, None, MATH)
        assert_error(refused, 401, "authentication_error", "no client key exists yet")
        assert chat(gw, create(gw, "first"), MATH).status_code == 200


def test_open_on_a_public_address_only_when_told() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5")
    assert not is_loopback("gateway.example.com")
    with pytest.raises(ConfigError, match=r"auth\.allow_open"):
        check_exposure(AuthSettings(client_keys="off"), "0.0.0.0")
    check_exposure(AuthSettings(client_keys="off", allow_open=True), "0.0.0.0")
    check_exposure(AuthSettings(client_keys="off"), "127.0.0.1")
    check_exposure(AuthSettings(), "0.0.0.0")  # auto: closed until a key exists


def test_coe_serve_refuses_to_start_open_on_a_public_address(tmp_path: Path) -> None:
    config = tmp_path / "coe.yaml"
    config.write_text("auth: {client_keys: 'off'}\nregistry: {url: 'memory://'}\n")
    result = CliRunner().invoke(cli, ["serve", "-c", str(config), "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "auth.allow_open" in result.output


def test_cli_keys_direct_then_the_gateway_requires_them(
    tmp_path: Path, sims: dict[str, Sim], embedder: Embedder
) -> None:
    db = tmp_path / "registry.db"
    config = write_config(tmp_path, standard_experts(sims), registry={"url": f"sqlite:///{db}"})
    runner = CliRunner()
    created = runner.invoke(
        cli, ["keys", "create", "ops", "--expert", "math-expert", "--rpm", "50", "-c", str(config)]
    )
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    listed = runner.invoke(cli, ["keys", "list", "--json", "-c", str(config)])
    assert [row["experts"] for row in json.loads(listed.stdout)] == [["math-expert"]]
    with run_gateway(config, embedder) as gw:  # the key persisted in the SQLite file
        assert chat(gw, None, MATH).status_code == 401
        assert chat(gw, key, MATH).status_code == 200
        os.environ["COE_ADMIN_KEY"] = ADMIN_KEY
        try:
            revoked = runner.invoke(cli, ["keys", "revoke", "ops", "--url", gw.url])
            remote = runner.invoke(cli, ["keys", "list", "--url", gw.url])
            used = runner.invoke(cli, ["keys", "usage", "ops", "--url", gw.url])
        finally:
            del os.environ["COE_ADMIN_KEY"]
        assert revoked.exit_code == 0, revoked.output
        assert "revoked" in remote.stdout and key not in remote.stdout
        assert json.loads(used.stdout)["minute"]["rpm"] == {"limit": 50, "remaining": 49}
        assert chat(gw, key, MATH).status_code == 401


@pytest.mark.redis
def test_replicas_share_keys_through_redis(
    tmp_path: Path, sims: dict[str, Sim], embedder: Embedder, redis_prefix: str
) -> None:
    experts = [expert("generalist", sims["general"], ["*"])]
    with two_replicas(tmp_path, embedder, experts, f"{REDIS_URL}?prefix={redis_prefix}") as (a, b):
        key = create(a, "shared")
        assert chat(b, key, MATH).status_code == 200
        assert chat(b, None, MATH).status_code == 401  # b knows keys exist
        assert httpx.delete(f"{b.url}/admin/keys/shared", headers=b.admin_headers).is_success
        assert_error(chat(a, key, MATH), 401, "authentication_error", "was revoked")
