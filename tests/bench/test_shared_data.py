"""The shared-data adapters (benchmark code) on committed samples of the shared folders
(tests/fixtures/shared: attribution in its README), and their export to `coe train`'s JSONL."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from bench.shared_data import (
    MMLU_PRO_ACTIVE_PARAMS_B,
    export,
    main,
    shared_labelled,
    shared_outcomes,
)
from routers.training.datasets import DatasetError
from routers.training.loaders import load_labelled, load_outcomes

REPO = Path(__file__).resolve().parents[2]


def test_data_hash_changes_with_content(mmlu_pro_folder: Path) -> None:
    data = shared_outcomes(mmlu_pro_folder)
    assert data.data_hash() == shared_outcomes(mmlu_pro_folder).data_hash()
    assert data.subset(range(10)).data_hash() != data.data_hash()


def test_mmlu_pro_adapter(mmlu_pro_folder: Path) -> None:
    data = shared_outcomes(mmlu_pro_folder)
    assert len(data) == 140 and len(data.experts) == 27
    assert not any(e.startswith("gemini") for e in data.experts)
    assert "\nA. " in data.texts[0]
    col = data.experts.index("Mixtral-8x7B-Instruct-v0.1")
    assert set(data.costs[:, col]) == {12.9}
    assert len(set(shared_labelled(mmlu_pro_folder).labels)) == 14


def test_routerbench_adapter_costs_in_usd(routerbench_folder: Path) -> None:
    data = shared_outcomes(routerbench_folder)
    gpt4 = data.experts.index("gpt-4-1106-preview")
    assert data.cost_unit == "USD"
    assert data.costs[:, gpt4].mean() > data.costs.mean()
    assert set(data.split or ()) <= {"train", "test"}


def test_unknown_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no routing outcomes"):
        shared_outcomes(tmp_path)


def test_active_params_match_the_sourced_table() -> None:
    with (REPO / "bench" / "routing" / "model_params.csv").open(newline="") as f:
        table = {r["model"]: r for r in csv.DictReader(f)}
    for model, active in MMLU_PRO_ACTIVE_PARAMS_B.items():
        assert float(table[model]["active_params_b"]) == active, model
        assert table[model]["source"], model


def test_export_gives_the_same_outcomes_to_coe_train(
    tmp_path: Path, routerbench_folder: Path
) -> None:
    out = tmp_path / "rb.jsonl"
    assert export(routerbench_folder, out) == 45
    data, again = shared_outcomes(routerbench_folder), load_outcomes(out)
    assert again.data_hash() == data.data_hash()  # so `coe eval` finds the training's dev rows
    assert again.ids == data.ids and again.split == data.split and again.labels == data.labels
    assert np.array_equal(np.isnan(again.scores), np.isnan(data.scores))
    assert not list(tmp_path.glob(".*"))  # written through a temporary file, then renamed


def test_export_of_a_folder_without_outcomes_is_labelled_queries(tmp_path: Path) -> None:
    folder = tmp_path / "humaneval"
    folder.mkdir()
    (folder / "questions.jsonl").write_text(
        '{"id": "h1", "prompt": "def add(a, b):", "domain": "code"}\n', encoding="utf-8"
    )
    assert export(folder, tmp_path / "h.jsonl") == 1
    assert load_labelled(tmp_path / "h.jsonl").labels == ("code",)


def test_export_command_names_a_bad_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "not a known shared-data folder" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()
