"""`coe` CLI: experts add/list/remove (direct and through the admin API), config check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from gateway.cli import app
from routers.embedder import Embedder
from tests.gateway.conftest import ADMIN_KEY, Sim, expert, run_gateway, write_config

runner = CliRunner()


def test_experts_add_list_remove_direct(tmp_path: Path, sims: dict[str, Sim]) -> None:
    config = write_config(tmp_path, [], registry={"url": f"sqlite:///{tmp_path / 'r.db'}"})
    added = runner.invoke(
        app,
        [
            "experts",
            "add",
            "coder",
            "--kind",
            "vllm",
            "--endpoint",
            sims["code"].url,
            "--category",
            "code",
            "--exemplar",
            "Write a Go HTTP server",
            "-c",
            str(config),
        ],
    )
    assert added.exit_code == 0, added.output
    listed = runner.invoke(app, ["experts", "list", "--json", "-c", str(config)])
    rows = json.loads(listed.output)
    assert [(r["name"], r["categories"], r["exemplars"]) for r in rows] == [
        ("coder", ["code"], ["Write a Go HTTP server"])
    ]
    duplicate = runner.invoke(
        app, ["experts", "add", "coder", "--kind", "local", "-c", str(config)]
    )
    assert duplicate.exit_code == 1 and "coder" in duplicate.output
    removed = runner.invoke(app, ["experts", "remove", "coder", "-c", str(config)])
    assert removed.exit_code == 0
    assert (
        json.loads(runner.invoke(app, ["experts", "list", "--json", "-c", str(config)]).output)
        == []
    )


def test_invalid_spec_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, [], registry={"url": f"sqlite:///{tmp_path / 'r.db'}"})
    result = runner.invoke(app, ["experts", "add", "x", "--kind", "openai", "-c", str(config)])
    assert result.exit_code == 2 and "endpoint" in result.output


def test_cli_in_another_process_changes_a_running_gateway(
    tmp_path: Path, sims: dict[str, Sim], embedder: Embedder
) -> None:
    """The gateway sees a write to its SQLite file by another process on the next request."""
    config = write_config(
        tmp_path,
        [expert("generalist", sims["general"], ["*"])],
        registry={"url": f"sqlite:///{tmp_path / 'r.db'}"},
    )
    with run_gateway(config, embedder) as gw:
        coe = [sys.executable, "-m", "gateway", "experts"]
        done = subprocess.run(
            [
                *coe,
                "add",
                "math-expert",
                "--kind",
                "vllm",
                "--endpoint",
                sims["math"].url,
                "--category",
                "math",
                "-c",
                str(config),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=os.environ | {"HF_HUB_OFFLINE": "1"},
        )
        assert done.returncode == 0, done.stderr
        chat = httpx.post(
            f"{gw.url}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "Integrate x^3 dx"}]},
        )
        assert chat.headers["x-coe-expert"] == "math-expert"


def test_experts_through_the_admin_api(
    tmp_path: Path, sims: dict[str, Sim], embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, [expert("generalist", sims["general"], ["*"])])
    with run_gateway(config, embedder) as gw:
        monkeypatch.setenv("COE_ADMIN_KEY", ADMIN_KEY)
        added = runner.invoke(
            app,
            [
                "experts",
                "add",
                "coder",
                "--kind",
                "vllm",
                "--endpoint",
                sims["code"].url,
                "--category",
                "code",
                "--url",
                gw.url,
            ],
        )
        assert added.exit_code == 0, added.output
        listed = runner.invoke(app, ["experts", "list", "--url", gw.url])
        assert "coder" in listed.output and "generalist" in listed.output
        monkeypatch.setenv("COE_ADMIN_KEY", "wrong-key-wrong-key")
        denied = runner.invoke(app, ["experts", "remove", "coder", "--url", gw.url])
        assert denied.exit_code == 1 and "403" in denied.output


def test_config_check_names_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  prot: 1\n")
    result = runner.invoke(app, ["config", "check", str(bad)])
    assert result.exit_code == 2 and "server.prot" in result.output
    good = runner.invoke(app, ["config", "check"])
    assert good.exit_code == 0 and "smollm2" in good.output


def test_config_check_names_a_retriever_without_its_index(tmp_path: Path) -> None:
    config = tmp_path / "coe.yaml"
    missing = tmp_path / "no-index"
    config.write_text(
        "experts:\n"
        "  - {name: g, kind: simulator, categories: ['*']}\n"
        f"  - {{name: med, kind: retriever, options: {{index: '{missing}'}}}}\n"
    )
    result = runner.invoke(app, ["config", "check", str(config)])
    assert result.exit_code == 2
    assert f"experts[1] (med) options.index: {missing}: no such index directory" in result.output


def test_direct_remove_refuses_a_discovered_expert(tmp_path: Path) -> None:
    import asyncio

    from registry.factory import registry_from_url
    from registry.spec import ExpertSpec

    url = f"sqlite:///{tmp_path / 'r.db'}"
    config = write_config(tmp_path, [], registry={"url": url})

    async def add_discovered() -> None:
        registry = registry_from_url(url)
        await registry.open()
        spec = {"name": "coder", "kind": "vllm", "endpoint": "http://coder.coe.svc:8000/v1"}
        await registry.add(ExpertSpec(**spec, managed_by="kubernetes:coe/vllm-code"))
        await registry.aclose()

    asyncio.run(add_discovered())
    removed = runner.invoke(app, ["experts", "remove", "coder", "-c", str(config)])
    assert removed.exit_code == 1
    assert "managed by kubernetes:coe/vllm-code" in removed.output
    listed = runner.invoke(app, ["experts", "list", "--json", "-c", str(config)])
    assert [row["name"] for row in json.loads(listed.output)] == ["coder"]
