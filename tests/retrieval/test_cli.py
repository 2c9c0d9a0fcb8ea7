"""`coe index build`: exit 0 with a loadable index; exit 2 with `error: FILE[:LINE]: ...`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from experts.retrieval import IndexKind, load_index, read_pilot_texts
from gateway.cli import app
from routers.embedder import Embedder
from tests.retrieval.conftest import SAMPLE, write_lines

runner = CliRunner()


def coe_index(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["index", "build", *args])
    return result.exit_code, result.stdout, result.stderr


def test_bad_corpus_lines_exit_2_naming_file_and_line(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    bad = write_lines(tmp_path / "bad.jsonl", '{"id": "a", "text": "x"}', "not json")
    code, _, err = coe_index("--corpus", str(bad), "--out", str(out))
    assert code == 2 and err.strip() == f"error: {bad}:2: not JSON (Expecting value)"
    empty = write_lines(tmp_path / "empty.jsonl", "")
    code, _, err = coe_index("--corpus", str(empty), "--out", str(out))
    assert code == 2 and err.strip() == f"error: {empty}: empty corpus (no documents)"
    code, _, err = coe_index("--corpus", str(tmp_path / "nope.jsonl"), "--out", str(out))
    assert code == 2 and err.startswith(f"error: {tmp_path / 'nope.jsonl'}: ")
    assert not out.exists()


def test_bad_options_exit_2(tmp_path: Path) -> None:
    code, _, _ = coe_index("--corpus", str(SAMPLE), "--out", str(tmp_path), "--kind", "sparse")
    assert code == 2
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = coe_index("--corpus", str(SAMPLE), "--out", str(tmp_path), "--kind", "lexical")
    assert code == 2 and "not empty and not an index; refusing to replace it" in err
    code, _, err = coe_index(
        "--corpus", str(SAMPLE), "--out", str(tmp_path / "x"), "--model", "/no"
    )
    assert code == 2 and "error: embedding model '/no': no such directory" in err


def test_builds_a_loadable_index(tmp_path: Path, real_embedder: Embedder) -> None:
    out = tmp_path / "sample-lexical"
    code, stdout, err = coe_index(
        "--corpus", str(SAMPLE), "--out", str(out), "--kind", "lexical", "--pilots", "4", "--json"
    )
    assert code == 0, err
    manifest = json.loads(stdout)
    assert manifest["kind"] == "index/lexical" and manifest["doc_count"] == 40
    assert manifest["embedder_id"] == real_embedder.id == "all-MiniLM-L6-v2"
    index = load_index(out, real_embedder)
    assert index.kind is IndexKind.LEXICAL and len(index.pilots) == 4
    assert index.search("supersonic axially symmetric nozzles", k=1)[0].id == "cran/127"


def test_pilot_queries_become_the_pilot_texts(tmp_path: Path, real_embedder: Embedder) -> None:
    out = tmp_path / "idx"
    queries = write_lines(
        tmp_path / "queries.jsonl", '{"text": "flow over a wing"}', "", '{"text": "nozzles"}'
    )
    code, stdout, err = coe_index(
        "--corpus", str(SAMPLE), "--out", str(out), "--kind", "lexical", "--pilot-queries",
        str(queries), "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(stdout)["pilot_texts"] == ["flow over a wing", "nozzles"]
    assert read_pilot_texts(out) == ("flow over a wing", "nozzles")


def test_bad_pilot_queries_exit_2_naming_file_and_line(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    bad = write_lines(tmp_path / "q.jsonl", '{"text": "ok"}', '{"query": "no text"}')
    code, _, err = coe_index(
        "--corpus", str(SAMPLE), "--out", str(out), "--pilot-queries", str(bad)
    )
    assert code == 2 and err.strip() == (
        f"error: {bad}:2: expected an object with a non-empty 'text'"
    )
    code, _, err = coe_index(
        "--corpus", str(SAMPLE), "--out", str(out), "--pilot-queries", str(tmp_path / "none")
    )
    assert code == 2 and err.startswith(f"error: {tmp_path / 'none'}: ")
    assert not out.exists()


def test_serve_refuses_an_unusable_index(tmp_path: Path) -> None:
    result = runner.invoke(app, ["index", "serve", "--index", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'none'}: no such index directory"


def test_serve_runs_uvicorn_on_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, indexes: dict[IndexKind, Path]
) -> None:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    directory = indexes[IndexKind.LEXICAL]  # lexical: served without loading an embedder
    result = runner.invoke(app, ["index", "serve", "--index", str(directory), "--port", "8123"])
    assert result.exit_code == 0, result.stderr
    assert calls and calls[0]["host"] == "127.0.0.1" and calls[0]["port"] == 8123
    with TestClient(calls[0]["app"]) as client:
        body = client.post("/v1/search", json={"query": "boundary layer", "k": 2}).json()
        assert len(body["passages"]) == 2 and body["index"] == "lexical"
        assert client.get("/v1/index").json()["pilot_texts"] == list(read_pilot_texts(directory))
