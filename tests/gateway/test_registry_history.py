"""The registry's history over HTTP and the CLI: every write path recorded, secrets redacted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from gateway.cli import app as cli
from routers.embedder import Embedder
from tests.gateway.conftest import ADMIN_KEY, Sim, expert, run_gateway, write_config
from tests.gateway.guard_fixtures import tripwire

__all__ = ["tripwire"]  # a fixture

runner = CliRunner()


def rows(response: httpx.Response) -> list[tuple[str, str, str]]:
    assert response.status_code == 200, response.text
    return [(c["action"], c["name"], c["actor"]) for c in response.json()]


def test_admin_writes_are_recorded_and_readable(
    tmp_path: Path, sims: dict[str, Sim], embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, [expert("generalist", sims["general"], ["*"])])
    with run_gateway(config, embedder) as gw:
        admin = f"{gw.url}/admin/experts"
        secret_url = sims["math"].url.replace("http://", "http://user:hunter2@")
        body = expert("mathy", sims["math"], ["math"], options={"api_key": "sk-opt", "x": 1})
        body["endpoint"] = secret_url
        assert httpx.post(admin, json=body, headers=gw.admin_headers).status_code == 201
        assert (
            httpx.patch(f"{admin}/mathy", json={"cost": 4}, headers=gw.admin_headers).status_code
            == 200
        )
        assert httpx.delete(f"{admin}/mathy", headers=gw.admin_headers).status_code == 200

        history = httpx.get(f"{admin}/history", headers=gw.admin_headers)
        assert rows(history) == [
            ("remove", "mathy", "admin-api"),
            ("update", "mathy", "admin-api"),
            ("add", "mathy", "admin-api"),
            ("add", "generalist", "config-seed"),
        ]
        assert "hunter2" not in history.text and "sk-opt" not in history.text
        update = history.json()[1]
        assert (update["before"]["cost"], update["after"]["cost"]) == (1.0, 4.0)
        assert update["after"]["endpoint"].startswith("http://***@127.0.0.1:")
        assert update["after"]["options"] == {"api_key": "***", "x": 1}

        mine = httpx.get(
            f"{admin}/history", params={"name": "mathy", "limit": 1}, headers=gw.admin_headers
        )
        assert rows(mine) == [("remove", "mathy", "admin-api")]
        assert httpx.get(f"{admin}/history").status_code == 401
        bad = httpx.get(f"{admin}/history", params={"limit": 0}, headers=gw.admin_headers)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "query.limit"

        monkeypatch.setenv("COE_ADMIN_KEY", ADMIN_KEY)
        shown = runner.invoke(cli, ["experts", "history", "mathy", "--url", gw.url, "--json"])
        assert shown.exit_code == 0, shown.output
        # stdout only: another test's logging set-up may print httpx's request log to stderr
        assert [r["action"] for r in json.loads(shown.stdout)] == ["remove", "update", "add"]
        text = runner.invoke(cli, ["experts", "history", "--url", gw.url, "--limit", "3"])
        lines = text.stdout.splitlines()
        assert len(lines) == 3 and "cost: 1.0 -> 4.0" in lines[1], text.output


def test_discovery_is_recorded_and_a_refused_service_ignored(
    tmp_path: Path,
    sims: dict[str, Sim],
    embedder: Embedder,
    caplog: pytest.LogCaptureFixture,
    tripwire: list[str],
) -> None:
    pytest.importorskip("kubernetes")
    from tests.gateway.test_discovery import wait_for_models
    from tests.k8s_api import K8sApi, k8s_api, kubeconfig
    from tests.registry.test_k8s_discovery import listing, service

    notes: dict[str, Any] = {"categories": "code", "model": "code-model"}
    good = service("vllm-code", "4", endpoint=sims["code"].url, **notes)
    meta = service("vllm-math", "4", endpoint="http://169.254.169.254/v1", **notes)
    leaky = service(
        "openai-proxy", "4", endpoint=sims["general"].url, **{"api-key-env": "COE_ADMIN_KEY"}
    )
    api = K8sApi()
    api.lists.append(listing("5", good, meta, leaky))
    with k8s_api(api):
        discovery = {
            "enabled": True,
            "namespaces": ["coe"],
            "kubeconfig": str(kubeconfig(tmp_path / "kubeconfig", api.url)),
        }
        config = write_config(
            tmp_path,
            [expert("generalist", sims["general"], ["*"])],
            discovery={"kubernetes": discovery},
        )
        with run_gateway(config, embedder) as gw:
            ids = wait_for_models(gw.url, True, "coder")
            history = httpx.get(f"{gw.url}/admin/experts/history", headers=gw.admin_headers)
    assert "coder" in ids and "math" not in ids and "general" not in ids
    assert ("add", "coder", "discovery:kubernetes:coe/vllm-code") in rows(history)
    assert "endpoint_deny" in caplog.text and "COE_ADMIN_KEY" in caplog.text
    assert not [host for host in tripwire if not host.startswith("127.")]
