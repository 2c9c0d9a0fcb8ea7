"""The embedded SQLite registry survives a gateway restart; config seeding happens once."""

from __future__ import annotations

from pathlib import Path

import httpx

from routers.embedder import Embedder
from tests.gateway.conftest import Sim, expert, run_gateway, write_config


def test_registry_survives_restart_and_seeds_once(
    tmp_path: Path, sims: dict[str, Sim], embedder: Embedder
) -> None:
    db = tmp_path / "registry.db"
    config = write_config(
        tmp_path,
        [expert("generalist", sims["general"], ["*"])],
        registry={"url": f"sqlite:///{db}"},
    )
    with run_gateway(config, embedder) as gw:
        added = httpx.post(
            f"{gw.url}/admin/experts",
            headers=gw.admin_headers,
            json=expert("math-expert", sims["math"], ["math"]),
        )
        assert added.status_code == 201
        removed = httpx.delete(f"{gw.url}/admin/experts/generalist", headers=gw.admin_headers)
        assert removed.status_code == 200
    with run_gateway(config, embedder) as gw:
        names = [m["id"] for m in httpx.get(f"{gw.url}/v1/models").json()["data"]]
        # the runtime change persisted; the removed seed expert was not re-seeded
        assert names == ["auto", "math-expert"]
        chat = httpx.post(
            f"{gw.url}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "What is 9 * 9?"}]},
        )
        assert chat.headers["x-coe-expert"] == "math-expert"
