"""The gateway with Kubernetes discovery on: a labelled Service (served by the API stand-in,
tests/k8s_api.py) becomes a routable expert, leaves when the Service goes, and belongs to
discovery, not to the admin API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from routers.embedder import Embedder
from tests.gateway.conftest import Sim, expert, run_gateway, simulator, write_config
from tests.k8s_api import K8sApi, WatchScript, k8s_api, kubeconfig
from tests.registry.test_k8s_discovery import event, listing, service

pytest.importorskip("kubernetes")


def wait_for_models(url: str, present: bool, name: str, timeout_s: float = 15.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        ids = [m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]]
        if (name in ids) == present or time.monotonic() > deadline:
            return ids
        time.sleep(0.05)


def discovering(tmp_path: Path, sims: dict[str, Sim], api: K8sApi, **options: Any) -> Path:
    """A config with a generalist and Kubernetes discovery of namespace `coe` on the stand-in."""
    kubernetes = {
        "enabled": True,
        "namespaces": ["coe"],
        "kubeconfig": str(kubeconfig(tmp_path / "kubeconfig", api.url)),
        **options,
    }
    experts = [expert("generalist", sims["general"], ["*"])]
    return write_config(tmp_path, experts, discovery={"kubernetes": kubernetes})


def test_a_labelled_service_is_an_expert_until_it_goes(
    tmp_path: Path, sims: dict[str, Sim], embedder: Embedder
) -> None:
    with simulator(model="discovered-model", completion_tokens=4) as upstream:
        coder = service(
            "vllm-code", "4", endpoint=upstream.url, categories="code", model="discovered-model"
        )
        api = K8sApi(idle_s=0.1)
        api.lists.append(listing("5", coder))
        with k8s_api(api):
            config = discovering(tmp_path, sims, api, retry_s=0.05)
            with run_gateway(config, embedder) as gw:
                ready = httpx.get(f"{gw.url}/readyz").json()
                assert ready["discovery"]["kubernetes"]["coe"]["state"] == "watching"
                assert "coder" in wait_for_models(gw.url, True, "coder")
                routed = httpx.post(
                    f"{gw.url}/v1/chat/completions",
                    json={"messages": [{"role": "user", "content": "Implement quicksort in C."}]},
                )
                assert routed.status_code == 200, routed.text
                assert routed.headers["x-coe-expert"] == "coder"
                assert routed.json()["model"] == "coder"
                assert upstream.stats.requests_received == 1

                admin = f"{gw.url}/admin/experts"
                patched = httpx.patch(f"{admin}/coder", json={"cost": 9}, headers=gw.admin_headers)
                assert patched.status_code == 409
                assert patched.json()["error"]["code"] == "expert_managed"
                assert "kubernetes:coe/vllm-code" in patched.json()["error"]["message"]
                assert httpx.delete(f"{admin}/coder", headers=gw.admin_headers).status_code == 409
                forged = expert("forged", sims["general"], ["*"], managed_by="kubernetes:coe/x")
                refused = httpx.post(admin, json=forged, headers=gw.admin_headers)
                assert refused.status_code == 400
                assert refused.json()["error"]["param"] == "managed_by"

                api.watches.append(WatchScript([event("DELETED", service("vllm-code", "6"))]))
                assert "coder" not in wait_for_models(gw.url, False, "coder")
                assert "generalist" in wait_for_models(gw.url, True, "generalist")


def test_discovery_of_an_unbuildable_expert_is_refused(
    tmp_path: Path, sims: dict[str, Sim], embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    keyed = service(
        "openai-proxy", "4", endpoint="http://127.0.0.1:9/v1", **{"api-key-env": "NOT_SET_ANYWHERE"}
    )
    api = K8sApi()
    api.lists.append(listing("5", keyed))
    with k8s_api(api):
        config = discovering(tmp_path, sims, api)
        with run_gateway(config, embedder) as gw:
            ids = [m["id"] for m in httpx.get(f"{gw.url}/v1/models").json()["data"]]
    assert "general" not in ids
    assert "expert 'general' cannot be used" in caplog.text
    assert "NOT_SET_ANYWHERE" in caplog.text
