"""`coe train --fusion adaptive` and `coe eval --fusion` on the committed MMLU-Pro sample (a
folder of questions.jsonl + outcomes.csv, read as it is), and a gateway applying the fan-out
rule an artifact records (tests/fixtures/shared: attribution in its README)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from gateway.app import create_app
from gateway.cli import app
from gateway.settings import load_settings
from routers.embedder import Embedder
from routers.factory import build_router
from routers.fusion_rule import FusionRule
from routers.trained_model import Selection, load_model, save_model
from tests.servers import serve_in_thread

ROOT = Path(__file__).resolve().parents[2]
MMLU_PRO = ROOT / "tests" / "fixtures" / "shared" / "mmlu_pro"
COSTS = ROOT / "bench" / "fusion" / "mmlu_pro_costs.csv"
POOL = [
    "Meta-Llama-3_1-8B-Instruct",
    "Phi-3-mini-4k-instruct",
    "mathstral-7B",
    "Qwen1.5-7B-Chat",
    "Mixtral-8x7B-Instruct-v0.1",
]
runner = CliRunner()


@pytest.fixture(autouse=True)
def _embed_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COE_EMBED_CACHE", str(tmp_path / "embeddings"))


def coe(*args: str | Path) -> Any:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def fails(*args: str | Path) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    return result.output


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("art") / "heads-fused"
    metrics = coe(
        "train", "--data", MMLU_PRO, "--costs", COSTS, "--experts", ",".join(POOL),
        "--router", "heads", "--fusion", "adaptive", "--max-cost", "25", "--out", out, "--json",
    )  # fmt: skip
    return out, metrics


def test_train_records_the_rule_chosen_within_the_budget(
    artifact: tuple[Path, dict[str, Any]],
) -> None:
    out, metrics = artifact
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["experts"] == POOL and manifest["params"]["fusion"]["strategy"] == "vote"
    assert metrics["fusion"]["val"]["avg_cost"] <= 25
    assert metrics["fusion"]["max_cost"] == 25


def test_eval_applies_each_policy_with_the_top_level_keys(
    artifact: tuple[Path, dict[str, Any]],
) -> None:
    out, metrics = artifact
    got = {
        f: coe("eval", "--artifact", out, "--data", MMLU_PRO, "--fusion", f, "--json")
        for f in ("none", "vote", "cascade", "adaptive")
    }
    for result in got.values():
        assert {"accuracy", "avg_cost", "avg_experts"} <= result.keys()
        assert result["evaluated_on"] == "dev split"  # the folder is the data it was trained on
    assert got["none"]["avg_experts"] == 1.0
    assert got["vote"]["avg_experts"] == 3.0 and got["vote"]["avg_cost"] > got["none"]["avg_cost"]
    assert 2.0 <= got["cascade"]["avg_experts"] <= 3.0
    assert got["cascade"]["avg_cost"] <= got["vote"]["avg_cost"]
    # the gateway's rule, applied by eval, gives what training measured on the same dev rows
    assert got["adaptive"]["accuracy"] == pytest.approx(metrics["fusion"]["dev"]["accuracy"])
    assert got["adaptive"]["avg_cost"] == pytest.approx(metrics["fusion"]["dev"]["avg_cost"])
    one = coe(
        "eval", "--artifact", out, "--data", MMLU_PRO, "--fusion", "vote", "--k", "1", "--json"
    )
    assert one["accuracy"] == got["none"]["accuracy"]
    two = coe(
        "eval", "--artifact", out, "--data", MMLU_PRO, "--fusion", "vote",
        "--experts", "Phi-3-mini-4k-instruct,mathstral-7B", "--json",
    )  # fmt: skip
    assert two["avg_experts"] == 2.0 and two["avg_cost"] == pytest.approx(3.8 + 7.25)


def test_fusion_mistakes_exit_2_naming_what_to_do(
    artifact: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, _ = artifact
    assert "--fusion must be" in fails(
        "eval", "--artifact", out, "--data", MMLU_PRO, "--fusion", "magic"
    )
    assert "not experts of this artifact: gpt-9" in fails(
        "eval", "--artifact", out, "--data", MMLU_PRO, "--fusion", "vote", "--experts", "gpt-9"
    )
    plain = tmp_path / "plain"
    coe("train", "--data", MMLU_PRO, "--costs", COSTS, "--experts", ",".join(POOL),
        "--router", "heads", "--out", plain, "--json")  # fmt: skip
    assert "coe train --fusion adaptive" in fails(
        "eval", "--artifact", plain, "--data", MMLU_PRO, "--fusion", "adaptive"
    )
    no_answers = tmp_path / "o.jsonl"
    no_answers.write_text(
        "".join(
            json.dumps({"text": f"q{i}", "scores": {e: i % 2 for e in POOL}}) + "\n"
            for i in range(30)
        )
    )
    assert "carry none" in fails(
        "train", "--data", no_answers, "--router", "heads", "--fusion", "adaptive",
        "--max-cost", "3", "--out", tmp_path / "x",
    )  # fmt: skip
    assert "give --max-cost" in fails(
        "train", "--data", MMLU_PRO, "--router", "heads", "--fusion", "adaptive",
        "--out", tmp_path / "y",
    )  # fmt: skip
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@contextlib.contextmanager
def served(artifact: Path, tmp_path: Path, embedder: Embedder) -> Iterator[str]:
    config = tmp_path / "coe.yaml"
    experts = [{"name": name, "kind": "simulator", "categories": ["*"]} for name in POOL]
    config.write_text(
        yaml.safe_dump(
            {"registry": {"url": "memory://"}, "router": {"artifact": str(artifact)},
             "experts": experts}
        )
    )  # fmt: skip
    settings = load_settings(config)
    with serve_in_thread(
        create_app(settings, router=build_router(settings.router, embedder))
    ) as url:
        yield url


def with_rule(source: Path, out: Path, mass: float) -> Path:
    model = load_model(source)
    selection = Selection(cost_weight=0.0, top_k_mass=mass, top_k_temperature=0.05)
    save_model(out, replace(model, selection=selection, fusion=FusionRule(max_k=3)))
    return out


@pytest.mark.parametrize(("mass", "fused"), [(1.0, True), (0.01, False)])
def test_the_gateway_applies_the_artifacts_fan_out_rule(
    artifact: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    real_embedder: Embedder,
    mass: float,
    fused: bool,
) -> None:
    """mass 1.0: every query needs all experts, capped at the rule's 3; mass 0.01: the first
    alone (k = 1, no fusion cost). Nothing in the config or the request asks for fusion."""
    rule = with_rule(artifact[0], tmp_path / "rule", mass)
    query = "What is the derivative of x^3? A. 3x^2 B. x^2 C. 3x D. x^3"
    with served(rule, tmp_path, real_embedder) as url:
        plan = httpx.post(f"{url}/v1/route", json={"query": query}).json()
        ranked = [e["name"] for e in plan["experts"]]
        chat = httpx.post(
            f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": query}]}
        )
        assert chat.status_code == 200
        if fused:
            assert plan["fusion"]["strategy"] == "vote" and plan["fusion"]["k"] == 3
            assert plan["fusion"]["experts"] == ranked[:3]
            assert chat.headers["x-coe-fusion"] == "vote"
            assert chat.headers["x-coe-experts"].split(",") == ranked[:3]
        else:
            assert plan["fusion"] == {
                "strategy": "none", "k": 1, "experts": ranked[:1], "reason": "router sure (k=1)"
            }  # fmt: skip
            assert chat.headers["x-coe-fusion"] == "none"
            assert chat.headers["x-coe-expert"] == ranked[0]
