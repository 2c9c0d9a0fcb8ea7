"""Two replicas racing on one Redis: registry writes lose no update (each is a WATCHed
transaction), a key's rate limit is not overrun (one atomic moving window for all replicas),
and two adds of one name give one expert."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from routers.embedder import Embedder
from tests.gateway.conftest import Gateway, Sim, expert, two_replicas
from tests.gateway.test_keys import MATH, create
from tests.redis_server import REDIS_URL

pytestmark = pytest.mark.redis


def test_racing_replicas_lose_no_update_and_share_one_limit(
    tmp_path: Path, sims: dict[str, Sim], embedder: Embedder, redis_prefix: str
) -> None:
    experts = [expert("generalist", sims["general"], ["*"], max_concurrency=64)]
    url = f"{REDIS_URL}?prefix={redis_prefix}"
    with two_replicas(tmp_path, embedder, experts, url) as (a, b):
        key = create(a, "racer", rpm=10)

        def call(gw: Gateway) -> int:
            headers = {"authorization": f"Bearer {key}"}
            body = {"messages": MATH}
            return httpx.post(
                f"{gw.url}/v1/chat/completions", json=body, headers=headers
            ).status_code

        with ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(call, [a, b] * 15))
        assert codes.count(200) == 10 and codes.count(429) == 20, codes

        admin = "/admin/experts/generalist"

        def patch(job: tuple[Gateway, dict[str, object]]) -> int:
            gw, body = job
            return httpx.patch(f"{gw.url}{admin}", json=body, headers=gw.admin_headers).status_code

        jobs: list[tuple[Gateway, dict[str, object]]] = []
        jobs += [(a, {"cost": float(i)}) for i in range(2, 17)]
        jobs += [(b, {"categories": [f"c{i}"]}) for i in range(2, 17)]
        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(patch, jobs)) == {200}
        spec = httpx.get(f"{b.url}{admin}", headers=b.admin_headers).json()
        assert spec["cost"] >= 2.0 and spec["categories"][0].startswith("c")  # both kept
        history = httpx.get(
            f"{a.url}/admin/experts/history",
            params={"name": "generalist", "limit": 100},
            headers=a.admin_headers,
        ).json()
        assert sum(entry["action"] == "update" for entry in history) == 30

        spec_new = {"name": "twin", "kind": "vllm", "endpoint": sims["code"].url}

        def add(gw: Gateway) -> int:
            response = httpx.post(
                f"{gw.url}/admin/experts", json=spec_new, headers=gw.admin_headers
            )
            return response.status_code

        with ThreadPoolExecutor(2) as pool:
            assert sorted(pool.map(add, [a, b])) == [201, 409]
