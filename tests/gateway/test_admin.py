"""Admin API: auth, and experts added / changed / removed while the gateway runs."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from routers.embedder import Embedder
from tests.gateway.conftest import Gateway, Sim, expert, run_gateway, simulator, write_config

NEW_EXPERT_EXEMPLARS = [
    "What is the capital of France?",
    "Which river flows through Cairo?",
    "Name the highest mountain in Africa.",
    "What countries border Switzerland?",
]


def test_admin_requires_bearer_key(gateway: Gateway) -> None:
    url = f"{gateway.url}/admin/experts"
    missing = httpx.get(url)
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"
    wrong = httpx.get(url, headers={"authorization": "Bearer not-the-key-at-all"})
    assert wrong.status_code == 403
    assert httpx.get(url, headers=gateway.admin_headers).status_code == 200


def test_admin_disabled_without_key(
    tmp_path: Path, sims: dict[str, Sim], embedder: Embedder
) -> None:
    config = write_config(tmp_path, [expert("generalist", sims["general"], ["*"])])
    with run_gateway(config, embedder, admin_key=None) as gw:
        response = httpx.get(f"{gw.url}/admin/experts", headers={"authorization": "Bearer x" * 3})
        assert response.status_code == 403
        assert "COE_ADMIN_KEY" in response.json()["error"]["message"]


def test_added_expert_is_routable_on_next_request(gateway: Gateway) -> None:
    query = {"query": "What is the capital city of Peru?"}
    before = httpx.post(f"{gateway.url}/v1/route", json=query).json()
    assert "geo-expert" not in [e["name"] for e in before["experts"]]
    with simulator(model="geo-model", completion_tokens=3) as geo:
        spec = {
            "name": "geo-expert",
            "kind": "vllm",
            "endpoint": geo.url,
            "exemplars": NEW_EXPERT_EXEMPLARS,
        }
        created = httpx.post(
            f"{gateway.url}/admin/experts", json=spec, headers=gateway.admin_headers
        )
        assert created.status_code == 201, created.text
        after = httpx.post(f"{gateway.url}/v1/route", json=query).json()
        assert after["category"] == "geo-expert" and after["selected"] == ["geo-expert"]
        chat = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "What is the capital city of Peru?"}]},
        )
        assert chat.headers["x-coe-expert"] == "geo-expert"
        assert geo.stats.requests_received == 1
        assert "geo-expert" in [
            m["id"] for m in httpx.get(f"{gateway.url}/v1/models").json()["data"]
        ]


def test_removed_expert_stops_new_requests_while_inflight_finish(
    tmp_path: Path, embedder: Embedder
) -> None:
    with (
        simulator(model="slow", completion_tokens=15, inter_token_s=0.05) as slow,
        simulator(model="other", completion_tokens=3) as other,
    ):
        config = write_config(
            tmp_path, [expert("slow-expert", slow, ["math"]), expert("generalist", other, ["*"])]
        )
        with run_gateway(config, embedder) as gw, httpx.Client(base_url=gw.url) as client:
            body = {
                "model": "slow-expert",
                "stream": True,
                "messages": [{"role": "user", "content": "count slowly"}],
            }
            with client.stream("POST", "/v1/chat/completions", json=body) as response:
                lines = response.iter_lines()
                first = next(line for line in lines if line.startswith("data: "))
                assert json.loads(first[6:])["model"] == "slow-expert"
                deleted = client.delete("/admin/experts/slow-expert", headers=gw.admin_headers)
                assert deleted.status_code == 200 and deleted.json()["name"] == "slow-expert"
                # at once: the removed expert takes no new request
                pinned = client.post("/v1/chat/completions", json={**body, "stream": False})
                assert pinned.status_code == 404
                routed = client.post("/v1/route", json={"query": "Solve 3x = 12"}).json()
                assert "slow-expert" not in [e["name"] for e in routed["experts"]]
                rest = [line for line in lines if line.startswith("data: ")]
            assert rest[-1] == "data: [DONE]"
            finishes = [
                json.loads(x[6:])["choices"][0].get("finish_reason")
                for x in rest[:-1]
                if json.loads(x[6:])["choices"]
            ]
            assert "stop" in finishes
            assert slow.stats.streams_completed == 1 and slow.stats.streams_cancelled == 0


def test_patch_disables_and_validates(gateway: Gateway) -> None:
    url = f"{gateway.url}/admin/experts/math-expert"
    bad = httpx.patch(url, json={"max_concurrency": 0}, headers=gateway.admin_headers)
    assert bad.status_code == 400 and "max_concurrency" in bad.json()["error"]["message"]
    unknown = httpx.patch(url, json={"colour": "red"}, headers=gateway.admin_headers)
    assert unknown.status_code == 400 and "colour" in unknown.json()["error"]["message"]
    ok = httpx.patch(url, json={"enabled": False}, headers=gateway.admin_headers)
    assert ok.status_code == 200 and ok.json()["enabled"] is False
    assert "math-expert" not in [
        m["id"] for m in httpx.get(f"{gateway.url}/v1/models").json()["data"]
    ]
    assert httpx.get(url, headers=gateway.admin_headers).json()["enabled"] is False


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/admin/experts", {"name": "generalist", "kind": "local"}, 409),
        ("POST", "/admin/experts", {"name": "x", "kind": "openai"}, 400),
        ("POST", "/admin/experts", {"name": "bad name!", "kind": "local"}, 400),
        ("DELETE", "/admin/experts/nobody", None, 404),
        ("GET", "/admin/experts/nobody", None, 404),
        ("PATCH", "/admin/experts/nobody", {"cost": 2}, 404),
    ],
)
def test_admin_errors_are_openai_shaped(
    gateway: Gateway, method: str, path: str, body: object, status: int
) -> None:
    response = httpx.request(
        method, f"{gateway.url}{path}", json=body, headers=gateway.admin_headers
    )
    assert response.status_code == status, response.text
    assert set(response.json()["error"]) >= {"message", "type", "code"}


def test_a_local_expert_with_bad_options_is_refused_naming_the_option(gateway: Gateway) -> None:
    body = {"name": "tiny", "kind": "local", "options": {"max_tokens": 0}}
    response = httpx.post(f"{gateway.url}/admin/experts", json=body, headers=gateway.admin_headers)
    assert response.status_code == 400, response.text
    assert "options.max_tokens" in response.json()["error"]["message"]
    listed = httpx.get(f"{gateway.url}/admin/experts", headers=gateway.admin_headers).json()
    assert "tiny" not in json.dumps(listed)  # nothing half-written
