"""`coe train` / `coe eval` on small committed samples of the shared data (exported to the JSONL
`coe train` reads, as a user would), and a gateway serving the trained artifact
(tests/fixtures/shared: attribution in its README)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from bench.shared_data import export
from gateway.app import create_app
from gateway.cli import app
from gateway.settings import load_settings
from routers.embedder import Embedder
from routers.factory import build_router
from tests.servers import serve_in_thread

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "shared"
runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two committed samples as `coe train` reads them (`python -m bench.shared_data`)."""
    out = tmp_path_factory.mktemp("data")
    for name in ("mmlu_pro", "routerbench_subset"):
        export(FIXTURES / name, out / f"{name}.jsonl")
    return {"mmlu_pro": out / "mmlu_pro.jsonl", "routerbench": out / "routerbench_subset.jsonl"}


@pytest.fixture(autouse=True)
def _embed_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COE_EMBED_CACHE", str(tmp_path / "embeddings"))


def coe(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def classifier(
    tmp_path_factory: pytest.TempPathFactory, data: dict[str, Path]
) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("art") / "mmlu-pro-logistic"
    mmlu_pro = str(data["mmlu_pro"])
    metrics = coe("train", "--data", mmlu_pro, "--router", "logistic", "--out", str(out), "--json")
    return out, metrics


def test_train_writes_an_artifact_without_pickle(classifier: tuple[Path, dict[str, Any]]) -> None:
    out, metrics = classifier
    assert (out / "manifest.json").is_file() and (out / "weights.npz").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "classifier/logistic"
    assert len(manifest["labels"]) == 14 and manifest["data_hash"]
    assert manifest["embedder_id"]
    assert 0.0 <= metrics["accuracy"] <= 1.0 and "macro_f1" in metrics and "confusion" in metrics


def test_eval_scores_the_dev_rows_the_training_reported(
    classifier: tuple[Path, dict[str, Any]], tmp_path: Path, data: dict[str, Path]
) -> None:
    out, trained = classifier
    evaluated = coe(
        "eval",
        "--artifact",
        str(out),
        "--data",
        str(data["mmlu_pro"]),
        "--json",
        "--out-dir",
        str(tmp_path / "report"),
    )
    assert evaluated["evaluated_on"] == "dev split"
    assert evaluated["accuracy"] == pytest.approx(trained["accuracy"])
    assert (tmp_path / "report" / "metrics.json").is_file()
    assert (tmp_path / "report" / "metrics.png").stat().st_size > 1000


def test_scorer_under_a_cost_cap_and_the_baselines(tmp_path: Path, data: dict[str, Path]) -> None:
    out = tmp_path / "rb-heads"
    routerbench = str(data["routerbench"])
    metrics = coe(
        "train",
        "--data",
        routerbench,
        "--router",
        "heads",
        "--out",
        str(out),
        "--max-cost",
        "0.002",
        "--json",
    )
    assert json.loads((out / "manifest.json").read_text())["kind"] == "scorer/heads"
    assert "aiq" in json.dumps(metrics)
    baselines = coe("eval", "--baselines", "--data", routerbench, "--json")
    labels = [b["label"] for b in baselines["baselines"]]
    assert any(label.startswith("best single") for label in labels) and "oracle" in labels
    table = runner.invoke(app, ["eval", "--baselines", "--data", routerbench])
    assert table.exit_code == 0
    oracle = next(line for line in table.output.splitlines() if line.startswith("oracle"))
    assert oracle.split()[-1] == f"{baselines['baselines'][3]['quality']:.4f}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--data", "{mmlu_pro}", "--router", "magic", "--out", "x"], "unknown router"),
        (
            [
                "train",
                "--data",
                "{mmlu_pro}",
                "--router",
                "heads",
                "--out",
                "x",
                "--max-cost",
                "1",
                "--min-quality",
                "0.5",
            ],
            "at most one",
        ),
        (["eval", "--data", "{mmlu_pro}"], "--artifact"),
        (
            ["train", "--data", str(FIXTURES), "--router", "knn", "--out", "x"],
            "is a folder; give a .jsonl or .csv file (a folder of routing outcomes holds "
            "questions.jsonl and outcomes.csv; the other folders of the shared evaluation data "
            "convert with `python -m bench.shared_data FOLDER --out FILE.jsonl`)",
        ),
    ],
)
def test_bad_invocations_exit_2_with_a_reason(
    args: list[str], message: str, data: dict[str, Path]
) -> None:
    result = runner.invoke(app, [a.format(mmlu_pro=data["mmlu_pro"]) for a in args])
    assert result.exit_code == 2 and message in result.output


def test_a_scorer_refuses_labelled_queries_with_what_to_do(tmp_path: Path) -> None:
    data = tmp_path / "labelled.jsonl"
    data.write_text('{"text": "integrate x^2", "label": "math"}\n')
    result = runner.invoke(
        app, ["train", "--data", str(data), "--router", "heads", "--out", str(tmp_path / "a")]
    )
    assert result.exit_code == 2
    assert "holds labelled queries" in result.output and "logistic" in result.output
    assert not (tmp_path / "a").exists()
    baselines = runner.invoke(app, ["eval", "--baselines", "--data", str(data)])
    assert baselines.exit_code == 2 and "not routing outcomes" in baselines.output


def test_train_table_shows_where_the_operating_point_was_chosen(
    tmp_path: Path, data: dict[str, Path]
) -> None:
    args = ["train", "--data", str(data["routerbench"]), "--router", "heads", "--max-cost", "0.002"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "rb")])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if line.startswith("chosen on val"))
    cost = float(row.split(")")[1].split()[0])  # "chosen on val (N rows)  COST  QUALITY ..."
    assert 0 < cost <= 0.002 and "standard errors" in row


def test_baselines_on_outcomes_without_a_complete_row_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "sparse.jsonl"
    rows = [
        {"text": f"question {i}", "scores": {"a" if i % 2 else "b": 1.0}, "costs": {"a": 1, "b": 2}}
        for i in range(20)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = runner.invoke(app, ["eval", "--baselines", "--data", str(data)])
    assert result.exit_code == 2
    assert "no dev row has an outcome for every expert" in result.output
    assert "--missing-as-failure" in result.output


@pytest.fixture
def trained_gateway(
    classifier: tuple[Path, dict[str, Any]], tmp_path: Path, real_embedder: Embedder
) -> Iterator[str]:
    config = tmp_path / "coe.yaml"
    experts = [
        {"name": "law-expert", "kind": "simulator", "categories": ["law"]},
        {"name": "generalist", "kind": "simulator", "categories": ["*"]},
    ]
    config.write_text(
        yaml.safe_dump(
            {
                "registry": {"url": "memory://"},
                "router": {"artifact": str(classifier[0])},
                "experts": experts,
            }
        )
    )
    settings = load_settings(config)
    app_ = create_app(settings, router=build_router(settings.router, real_embedder))
    with serve_in_thread(app_) as url:
        yield url


def test_gateway_routes_with_the_trained_artifact(trained_gateway: str) -> None:
    """The artifact's 14 categories drive the expert map (a 112-row toy classifier: the test
    checks the plumbing, not its accuracy)."""
    query = "Is a verbal contract for the sale of land enforceable under the statute of frauds?"
    body = httpx.post(f"{trained_gateway}/v1/route", json={"query": query}).json()
    assert body["router"] == "trained:classifier/logistic"
    assert len(body["categories"]) == 14
    assert body["category"] == body["categories"][0]["name"]
    expected = "law-expert" if body["category"] == "law" else "generalist"
    assert body["selected"] == [expected]
    chat = httpx.post(
        f"{trained_gateway}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": query}]},
    )
    assert chat.status_code == 200
    assert chat.headers["x-coe-expert"] == expected
    assert chat.headers["x-coe-category"] == body["category"]
