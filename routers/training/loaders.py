"""Load training data from the files users bring (formats: `routers.training.datasets`).

    load_labelled(path)   labelled-queries JSONL
    load_outcomes(path)   routing-outcomes JSONL or CSV

Errors are `DatasetError`, naming the file and line.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routers.training.datasets import DatasetError, LabelledQueries, RoutingOutcomes

__all__ = [
    "COST_SUFFIX",
    "load_labelled",
    "load_labelled_jsonl",
    "load_outcomes",
    "load_outcomes_csv",
    "load_outcomes_jsonl",
]

COST_SUFFIX = "|cost"
"""CSV column suffix for an expert's per-query cost (`gpt-4|cost`)."""


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"{path}: {exc.strerror or exc}") from exc
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{number}: not JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{number}: expected a JSON object")
            yield number, row


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
    for number, row in _json_lines(path):
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


def _number(value: Any, where: str, what: str) -> float:
    if value is None or value == "":
        return math.nan
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: {what} {value!r} is not a number") from None
    if math.isinf(number):
        raise DatasetError(f"{where}: {what} is infinite")
    return number


def load_outcomes_jsonl(path: Path, *, default_cost: float = 1.0) -> RoutingOutcomes:
    """Routing outcomes from JSONL (`{"text", "scores": {...}, "costs"?: {...}, "label"?}`)."""
    rows: list[tuple[str, str, dict[str, float], dict[str, float], str | None, str | None]] = []
    experts: dict[str, None] = {}
    for number, row in _json_lines(path):
        where = f"{path}:{number}"
        text = _text(row, "text", where)
        raw_scores, raw_costs = row.get("scores"), row.get("costs", {})
        if not isinstance(raw_scores, dict) or not raw_scores:
            raise DatasetError(f"{where}: 'scores' must be a non-empty object")
        if not isinstance(raw_costs, dict):
            raise DatasetError(f"{where}: 'costs' must be an object")
        scores = {str(k): _number(v, where, f"score of {k!r}") for k, v in raw_scores.items()}
        costs = {str(k): _number(v, where, f"cost of {k!r}") for k, v in raw_costs.items()}
        if any(math.isnan(c) or c < 0 for c in costs.values()):
            raise DatasetError(f"{where}: costs must be numbers >= 0")
        experts.update(dict.fromkeys(scores))
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
    )


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
    optional `<expert>|cost` columns."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"{path}: {exc.strerror or exc}") from exc
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header or "text" not in header:
            raise DatasetError(f"{path}:1: the header needs a 'text' column")
        reserved = {"text", "id", "label"}
        experts = tuple(c for c in header if c not in reserved and not c.endswith(COST_SUFFIX))
        if not experts:
            raise DatasetError(f"{path}:1: no expert score columns")
        unknown = [
            c for c in header if c.endswith(COST_SUFFIX) and c[: -len(COST_SUFFIX)] not in experts
        ]
        if unknown:
            raise DatasetError(f"{path}:1: cost columns for unknown experts: {unknown}")
        col = {name: i for i, name in enumerate(header)}
        texts, ids, labels, scores, costs = [], [], [], [], []
        for number, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            where = f"{path}:{number}"
            if len(row) != len(header):
                raise DatasetError(f"{where}: {len(row)} cells, the header has {len(header)}")
            texts.append(_text({"text": row[col["text"]]}, "text", where))
            ids.append(row[col["id"]] if "id" in col else str(number))
            labels.append(row[col["label"]] if "label" in col else None)
            scores.append([_number(row[col[e]], where, f"score of {e!r}") for e in experts])
            cost_row = []
            for e in experts:
                cell = row[col[e + COST_SUFFIX]] if e + COST_SUFFIX in col else ""
                value = default_cost if cell == "" else _number(cell, where, f"cost of {e!r}")
                if value < 0:
                    raise DatasetError(f"{where}: cost of {e!r} is negative")
                cost_row.append(value)
            costs.append(cost_row)
    if not texts:
        raise DatasetError(f"{path}: no rows")
    return RoutingOutcomes(
        texts=tuple(texts),
        ids=tuple(ids),
        experts=experts,
        scores=np.array(scores, dtype=np.float64),
        costs=np.array(costs, dtype=np.float64),
        labels=_labels_or_none(labels, path),
        name=path.stem,
    )


FOLDER_HINT = (
    "a folder of the shared evaluation data converts with "
    "`python -m bench.shared_data FOLDER --out FILE.jsonl`"
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
    """Routing outcomes from a JSONL or CSV file."""
    _not_a_folder(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return load_outcomes_jsonl(path)
    if suffix == ".csv":
        return load_outcomes_csv(path)
    raise DatasetError(f"{path}: expected a .jsonl or .csv file")
