from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from routers.training.datasets import DatasetError, train_dev_split
from routers.training.loaders import load_labelled, load_outcomes


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_labelled_jsonl_round_trip(tmp_path: Path) -> None:
    path = write(
        tmp_path / "q.jsonl",
        [
            json.dumps({"text": "2+2?", "label": "math"}),
            "",
            json.dumps({"text": "hi", "label": "chat", "id": "x"}),
        ],
    )
    data = load_labelled(path)
    assert data.texts == ("2+2?", "hi")
    assert data.label_set() == ("chat", "math")
    assert data.ids == ("1", "x")
    assert list(data.label_indices()) == [1, 0]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", ":2: not JSON"),
        (json.dumps({"text": "x"}), ":2: 'label'"),
        (json.dumps({"text": "", "label": "a"}), ":2: 'text'"),
        ("[1, 2]", ":2: expected a JSON object"),
    ],
)
def test_labelled_errors_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path / "q.jsonl", [json.dumps({"text": "ok", "label": "a"}), line])
    with pytest.raises(DatasetError, match=message):
        load_labelled(path)


def test_outcomes_csv_scores_costs_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label", "small", "big", "big|cost"])
        w.writerow(["easy one", "a", "1", "1", "3"])
        w.writerow(["hard one", "b", "0", "", "5"])
    data = load_outcomes(path)
    assert data.experts == ("small", "big")
    assert np.isnan(data.scores[1, 1])
    assert data.costs.tolist() == [[1.0, 3.0], [1.0, 5.0]]  # default cost 1 for `small`
    assert data.filled_scores()[1].tolist() == [0.0, 0.0]
    assert data.labels == ("a", "b")


def test_outcomes_csv_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "o.csv", ["text,a,b", "q1,1,0", "q2,1,yes"])
    with pytest.raises(DatasetError, match=r"o\.csv:3: score of 'b' 'yes' is not a number"):
        load_outcomes(path)
    path = write(tmp_path / "o2.csv", ["text,a,a|cost", "q1,1,-2"])
    with pytest.raises(DatasetError, match=r":2: cost of 'a' is negative"):
        load_outcomes(path)


def test_outcomes_jsonl_union_of_experts(tmp_path: Path) -> None:
    rows = [
        {"text": "q1", "scores": {"a": 1}, "costs": {"a": 2}},
        {"text": "q2", "scores": {"b": 0.5}},
    ]
    data = load_outcomes(write(tmp_path / "o.jsonl", [json.dumps(r) for r in rows]))
    assert data.experts == ("a", "b")
    assert np.isnan(data.scores[0, 1]) and np.isnan(data.scores[1, 0])
    assert data.costs.tolist() == [[2.0, 1.0], [1.0, 1.0]]
    with pytest.raises(DatasetError, match=r":1: 'scores' must be a non-empty object"):
        load_outcomes(write(tmp_path / "bad.jsonl", [json.dumps({"text": "q"})]))


def test_split_is_deterministic_disjoint_and_stratified() -> None:
    labels = ["a"] * 50 + ["b"] * 10
    train, dev = train_dev_split(60, 0.2, seed=3, stratify=labels)
    again = train_dev_split(60, 0.2, seed=3, stratify=labels)
    assert np.array_equal(train, again[0]) and np.array_equal(dev, again[1])
    assert not set(train) & set(dev) and len(train) + len(dev) == 60
    assert sum(labels[i] == "b" for i in dev) == 2 and len(dev) == 12
    assert not np.array_equal(dev, train_dev_split(60, 0.2, seed=4, stratify=labels)[1])


def test_a_folder_is_refused_with_how_to_convert_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"is a folder; .*python -m bench\.shared_data"):
        load_outcomes(tmp_path)
    with pytest.raises(DatasetError, match="is a folder"):
        load_labelled(tmp_path)


def test_outcomes_jsonl_carries_a_split(tmp_path: Path) -> None:
    rows = [
        {"text": "q1", "scores": {"a": 1}, "split": "train"},
        {"text": "q2", "scores": {"a": 0}, "split": "test"},
    ]
    assert load_outcomes(write(tmp_path / "o.jsonl", [json.dumps(r) for r in rows])).split == (
        "train",
        "test",
    )
    rows[1]["split"] = "dev"
    with pytest.raises(DatasetError, match=r":2: 'split' must be \"train\" or \"test\""):
        load_outcomes(write(tmp_path / "bad.jsonl", [json.dumps(r) for r in rows]))
