"""Load training data from the files users bring (formats: `routers.training.datasets`).

    load_labelled(path)   labelled-queries JSONL
    load_outcomes(path)   routing-outcomes JSONL or CSV, or a folder (`routers.training.folders`)

Errors are `DatasetError`, naming the file and line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routers.training.datasets import DatasetError, LabelledQueries, RoutingOutcomes
from routers.training.folders import (
    OUTCOMES,
    QUESTIONS,
    is_outcome_folder,
    load_outcome_folder,
)
from routers.training.readers import (
    COST_SUFFIX,
    json_lines,
    parse_number,
    read_outcome_table,
)

__all__ = [
    "COST_SUFFIX",
    "load_labelled",
    "load_labelled_jsonl",
    "load_outcomes",
    "load_outcomes_csv",
    "load_outcomes_jsonl",
]


def _text(row: Mapping[str, Any], field: str, where: str) -> str:
    value = row.get(field)
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{where}: {field!r} must be a non-empty string")
    return value


def load_labelled_jsonl(
    path: Path, *, text_field: str = "text", label_field: str = "label"
) -> LabelledQueries:
    """Labelled queries from JSONL (`{"text": ..., "label": ...}` a line)."""
    texts: list[str] = []
    labels: list[str] = []
    ids: list[str] = []
    for number, row in json_lines(path):
        where = f"{path}:{number}"
        texts.append(_text(row, text_field, where))
        label = row.get(label_field)
        if not isinstance(label, str | int) or isinstance(label, bool) or str(label) == "":
            raise DatasetError(f"{where}: {label_field!r} must be a non-empty string")
        labels.append(str(label))
        ids.append(str(row.get("id", number)))
    if not texts:
        raise DatasetError(f"{path}: no rows")
    return LabelledQueries(tuple(texts), tuple(labels), tuple(ids), path.stem)


def load_outcomes_jsonl(path: Path, *, default_cost: float = 1.0) -> RoutingOutcomes:
    """Routing outcomes from JSONL (`{"text", "scores": {...}, "costs"?: {...}, "label"?}`)."""
    rows: list[tuple[str, str, dict[str, float], dict[str, float], str | None, str | None]] = []
    answers: list[dict[str, str]] = []
    experts: dict[str, None] = {}
    for number, row in json_lines(path):
        where = f"{path}:{number}"
        text = _text(row, "text", where)
        raw_scores, raw_costs = row.get("scores"), row.get("costs", {})
        if not isinstance(raw_scores, dict) or not raw_scores:
            raise DatasetError(f"{where}: 'scores' must be a non-empty object")
        if not isinstance(raw_costs, dict):
            raise DatasetError(f"{where}: 'costs' must be an object")
        scores = {str(k): parse_number(v, where, f"score of {k!r}") for k, v in raw_scores.items()}
        costs = {str(k): parse_number(v, where, f"cost of {k!r}") for k, v in raw_costs.items()}
        if any(math.isnan(c) or c < 0 for c in costs.values()):
            raise DatasetError(f"{where}: costs must be numbers >= 0")
        experts.update(dict.fromkeys(scores))
        answers.append(_answers(row.get("answers", {}), where))
        label, split = row.get("label"), row.get("split")
        if split is not None and split not in ("train", "test"):
            raise DatasetError(f'{where}: \'split\' must be "train" or "test", not {split!r}')
        rows.append(
            (
                text,
                str(row.get("id", number)),
                scores,
                costs,
                None if label is None else str(label),
                split,
            )
        )
    if not rows:
        raise DatasetError(f"{path}: no rows")
    names = tuple(experts)
    scores_arr = np.array([[r[2].get(e, math.nan) for e in names] for r in rows], dtype=np.float64)
    costs_arr = np.array(
        [[r[3].get(e, default_cost) for e in names] for r in rows], dtype=np.float64
    )
    return RoutingOutcomes(
        texts=tuple(r[0] for r in rows),
        ids=tuple(r[1] for r in rows),
        experts=names,
        scores=scores_arr,
        costs=costs_arr,
        labels=_labels_or_none([r[4] for r in rows], path),
        split=_labels_or_none([r[5] for r in rows], path, "split"),
        name=path.stem,
        answers=np.array([[a.get(e, "") for e in names] for a in answers], dtype=np.str_)
        if any(answers)
        else None,
        costs_given=any(r[3] for r in rows),
    )


def _answers(raw: Any, where: str) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(
        isinstance(v, str | int | float) or v is None for v in raw.values()
    ):
        raise DatasetError(f"{where}: 'answers' must map experts to strings")
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


def _labels_or_none(
    labels: Sequence[str | None], path: Path, what: str = "label"
) -> tuple[str, ...] | None:
    present = [label for label in labels if label is not None]
    if not present:
        return None
    if len(present) != len(labels):
        raise DatasetError(f"{path}: {what!r} is set on some rows but not all")
    return tuple(present)


def load_outcomes_csv(path: Path, *, default_cost: float = 1.0) -> RoutingOutcomes:
    """Routing outcomes from CSV: `text`, optional `id` / `label`, one column per expert, and
    optional `<expert>|cost` and `<expert>|answer` columns (other `<expert>|...` are ignored)."""
    table = read_outcome_table(path, reserved=("text", "id", "label"), default_cost=default_cost)
    for where, row in table.rows:
        if "text" not in row:
            raise DatasetError(f"{path}:1: the header needs a 'text' column")
        _text(row, "text", where)
    return RoutingOutcomes(
        texts=tuple(row["text"] for _, row in table.rows),
        ids=tuple(row.get("id") or where.rsplit(":", 1)[1] for where, row in table.rows),
        experts=table.experts,
        scores=table.scores,
        costs=table.costs,
        labels=_labels_or_none([row.get("label") for _, row in table.rows], path),
        name=path.stem,
        answers=table.answers,
        costs_given=table.costs_given,
    )


FOLDER_HINT = (
    "a folder of routing outcomes holds questions.jsonl and outcomes.csv; the other folders "
    "of the shared evaluation data convert with `python -m bench.shared_data FOLDER --out "
    "FILE.jsonl`"
)


def _not_a_folder(path: Path) -> None:
    if path.is_dir():
        raise DatasetError(f"{path} is a folder; give a .jsonl or .csv file ({FOLDER_HINT})")


def load_labelled(path: Path) -> LabelledQueries:
    """Labelled queries from a JSONL file."""
    _not_a_folder(path)
    if path.suffix.lower() in (".jsonl", ".json"):
        return load_labelled_jsonl(path)
    raise DatasetError(f"{path}: expected a .jsonl file")


def load_outcomes(path: Path) -> RoutingOutcomes:
    """Routing outcomes from a JSONL or CSV file, or a folder (`routers.training.folders`);
    either file of such a folder (its questions.jsonl or outcomes.csv) stands for the folder."""
    if is_outcome_folder(path):
        return load_outcome_folder(path)
    if path.name in (QUESTIONS, OUTCOMES) and is_outcome_folder(path.parent):
        return load_outcome_folder(path.parent)
    _not_a_folder(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return load_outcomes_jsonl(path)
    if suffix == ".csv":
        return load_outcomes_csv(path)
    raise DatasetError(f"{path}: expected a .jsonl or .csv file")
