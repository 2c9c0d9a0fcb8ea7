"""`security` rules in isolation: host policy, the guarded HTTP client, api_key_env, model paths.

Nothing here sends a packet beyond loopback: names are resolved by a replaced `lookup`, and the
`tripwire` fixture fails the test if the gateway's client opens a connection elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from gateway.guard import SpecGuard, SpecRefused
from gateway.guarded_http import guarded_client, guarded_sync_transport
from gateway.netguard import EndpointRefused, HostPolicy, checked_addresses, parse_rule
from gateway.settings import ConfigError, SecuritySettings, load_settings
from registry.spec import ExpertSpec
from tests.gateway.guard_fixtures import fake_dns, tripwire
from tests.servers import serve_in_thread

__all__ = ["tripwire"]  # a fixture

DEFAULT = SecuritySettings()
POLICY = HostPolicy(DEFAULT.endpoint_allow, DEFAULT.endpoint_deny)
METADATA = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "169.254.170.2",
        "[fe80::1]",
        "fe80::1%eth0",
        "fd00:ec2::254",
        "100.100.100.200",
        "metadata.google.internal",
        "METADATA.Google.Internal.",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "2002:a9fe:a9fe::1",
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "ff02::1",
    ],
)
def test_refused_by_default(host: str) -> None:
    assert POLICY.name_refusal(host) is not None


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "10.0.0.5", "api.openai.com"])
def test_allowed_by_default(host: str) -> None:
    assert POLICY.name_refusal(host) is None


def test_a_name_is_judged_by_every_address_it_resolves_to(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(
        monkeypatch,
        {
            "evil.test": ["10.0.0.7", "169.254.169.254"],
            "v6.test": ["fe80::1"],
            "decimal.test": ["169.254.169.254"],
            "good.test": ["127.0.0.1", "::1"],
        },
    )
    for name in ("evil.test", "v6.test", "decimal.test"):
        with pytest.raises(EndpointRefused, match="resolves to"):
            checked_addresses(POLICY, name, 80)
    assert checked_addresses(POLICY, "good.test", 80) == ["127.0.0.1", "::1"]
    with pytest.raises(OSError):
        checked_addresses(POLICY, "nowhere.test", 80)
    assert checked_addresses(POLICY, "nowhere.test", 80, strict=False) == []


def test_numeric_spellings_of_the_metadata_address_are_refused() -> None:
    """The system resolver turns 2852039166 and 0xa9fea9fe into 169.254.169.254 (offline)."""
    for host in ("2852039166", "0xa9fea9fe", "169.254.43518"):
        with pytest.raises(EndpointRefused):
            checked_addresses(POLICY, host, 80)


def test_an_allow_list_admits_only_its_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"vllm.internal": ["10.1.2.3"], "other.test": ["192.168.1.1"]})
    policy = HostPolicy(["10.0.0.0/8", "*.svc.cluster.local"], DEFAULT.endpoint_deny)
    assert checked_addresses(policy, "vllm.internal", 80) == ["10.1.2.3"]
    assert checked_addresses(policy, "10.9.9.9", 80) == ["10.9.9.9"]
    assert policy.refusal("qwen.llm.svc.cluster.local") is None
    with pytest.raises(EndpointRefused, match=r"not in security.endpoint_allow"):
        checked_addresses(policy, "other.test", 80)
    with pytest.raises(EndpointRefused, match=r"not in security.endpoint_allow"):
        checked_addresses(policy, "127.0.0.1", 80)
    with pytest.raises(EndpointRefused, match=r"not in security.endpoint_allow"):
        checked_addresses(policy, "nowhere.test", 80, strict=False)  # cannot be checked
    # deny wins over allow
    both = HostPolicy(["169.254.0.0/16"], DEFAULT.endpoint_deny)
    assert both.name_refusal("169.254.169.254") is not None


def test_rules_are_validated_at_start_up() -> None:
    assert str(parse_rule("10.0.0.0/8")) == "10.0.0.0/8"
    assert parse_rule("*.Example.com.") == "*.example.com"
    for bad in ("10.0.0.0/33", "not a host", "", "*."):
        with pytest.raises(ValueError):
            parse_rule(bad)
    with pytest.raises(ConfigError, match=r"security.endpoint_deny"):
        load_settings(security={"endpoint_deny": ["169.254.0.0/99"]})
    with pytest.raises(ConfigError, match=r"security.api_key_env_prefixes"):
        load_settings(security={"api_key_env_prefixes": ["COE_"]})
    with pytest.raises(ConfigError, match=r"security.model_dirs"):
        load_settings(security={"model_dirs": ["relative/models"]})


def spec(**fields: Any) -> ExpertSpec:
    base: dict[str, Any] = {"name": "x", "kind": "openai", "model": "m"}
    return ExpertSpec.model_validate(base | {"endpoint": "http://127.0.0.1:9/v1"} | fields)


@pytest.mark.parametrize(
    "name",
    ["COE_ADMIN_KEY", "COE_REGISTRY__URL", "COE_CONFIG", "AWS_SECRET_ACCESS_KEY", "HOME", "PATH"],
)
def test_api_key_env_must_name_an_expert_key(name: str) -> None:
    with pytest.raises(SpecRefused) as refused:
        SpecGuard(DEFAULT).check(spec(api_key_env=name))
    assert refused.value.param == "api_key_env"
    assert name in str(refused.value)


def test_api_key_env_prefixes() -> None:
    guard = SpecGuard(DEFAULT)
    for name in ("OPENAI_API_KEY", "EXPERT_QWEN_MATH_KEY", "EXPERT_GEO_API_KEY"):
        guard.check(spec(api_key_env=name))
    custom = SpecGuard(SecuritySettings(api_key_env_prefixes=["VLLM_", "C"]))
    custom.check(spec(api_key_env="VLLM_KEY"))
    with pytest.raises(SpecRefused, match="gateway's own"):  # "C" matches, COE_ never does
        custom.check(spec(api_key_env="COE_ADMIN_KEY"))
    with pytest.raises(SpecRefused, match="empty"):
        SpecGuard(SecuritySettings(api_key_env_prefixes=[])).check(spec(api_key_env="EXPERT_A"))


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    (root / "tiny").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", root / "escape")
    os.symlink(root / "tiny", tmp_path / "link-in")
    return root


def local(model: str) -> ExpertSpec:
    return ExpertSpec.model_validate({"name": "l", "kind": "local", "model": model})


def test_local_models_stay_in_the_model_directories(model_dir: Path, tmp_path: Path) -> None:
    guard = SpecGuard(SecuritySettings(model_dirs=[model_dir]))
    for allowed in ("smollm2", str(model_dir / "tiny"), str(tmp_path / "link-in")):
        guard.check(local(allowed))
    for refused in (
        "/etc",
        "/",
        str(model_dir / ".." / "outside"),
        str(model_dir / "tiny" / ".." / ".." / "outside"),
        str(model_dir / "escape"),
        str(model_dir / "escape" / "x"),
        str(tmp_path / "models-evil"),
        "relative/path",
        "~/.ssh",
    ):
        with pytest.raises(SpecRefused) as caught:
            guard.check(local(refused))
        assert caught.value.param == "model"
    # an upstream's model id is not a path: only local models are checked
    guard.check(spec(model="../../etc/passwd"))


def test_the_default_model_dir_is_the_prepare_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COE_CACHE_DIR", "/srv/coe-cache")
    assert SecuritySettings().model_dirs == [Path("/srv/coe-cache/models")]


def redirecting_app() -> FastAPI:
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def redirect(path: str) -> RedirectResponse:
        return RedirectResponse(METADATA, status_code=302)

    return app


async def test_the_client_never_follows_a_redirect_to_metadata(tripwire: list[str]) -> None:
    limits = httpx.Limits(max_connections=4)
    with serve_in_thread(redirecting_app()) as url:
        async with guarded_client(POLICY, limits=limits, timeout=httpx.Timeout(5)) as client:
            response = await client.post(f"{url}/v1/chat/completions", json={})
            assert response.status_code == 302 and response.next_request is not None
            # even a caller asking to follow cannot reach it: the connection is refused
            with pytest.raises(httpx.ConnectError, match="endpoint_deny"):
                await client.get(f"{url}/v1/models", follow_redirects=True)
    assert all(host == "127.0.0.1" for host in tripwire)


async def test_a_name_rebound_to_metadata_is_refused_at_connect(
    monkeypatch: pytest.MonkeyPatch, tripwire: list[str]
) -> None:
    app = FastAPI()
    app.get("/ok")(lambda: {"ok": True})
    names = {"rebind.test": ["127.0.0.1"]}
    fake_dns(monkeypatch, names)
    with serve_in_thread(app) as url:
        port = httpx.URL(url).port
        target = f"http://rebind.test:{port}/ok"
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=0)
        async with guarded_client(POLICY, limits=limits, timeout=httpx.Timeout(5)) as client:
            assert (await client.get(target)).json() == {"ok": True}
            names["rebind.test"] = ["169.254.169.254"]
            # the request hook still trusts its check of a moment ago: the new connection
            # (no keep-alive here) resolves again and refuses
            with pytest.raises(httpx.ConnectError, match=r"169.254.169.254"):
                await client.get(target)
        async with guarded_client(POLICY, limits=limits, timeout=httpx.Timeout(5)) as client:
            with pytest.raises(httpx.ConnectError, match=r"169.254.169.254"):
                await client.get(target)  # refused by the request hook already
    assert tripwire == ["127.0.0.1"]


def test_the_sync_transport_refuses_too(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"meta.test": ["169.254.169.254"]})
    with httpx.Client(transport=guarded_sync_transport(POLICY)) as client:
        for url in ("http://meta.test/x", "http://[fe80::1]/x", METADATA):
            with pytest.raises(httpx.ConnectError, match="endpoint_deny"):
                client.get(url)
