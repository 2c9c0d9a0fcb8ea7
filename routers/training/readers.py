"""Reading the rows of data files: JSON lines, numbers, and the outcomes CSV's columns.

Shared by `routers.training.loaders` (files) and `routers.training.folders` (folders).
Errors are `DatasetError`, naming the file and line.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from routers.training.datasets import DatasetError

__all__ = [
    "ANSWER_SUFFIXES",
    "COST_SUFFIX",
    "OutcomeTable",
    "column_kind",
    "json_lines",
    "parse_number",
    "read_outcome_table",
]

COST_SUFFIX = "|cost"
"""CSV column suffix for an expert's per-query cost (`gpt-4|cost`)."""
ANSWER_SUFFIXES = ("|answer", "|pred")
"""CSV column suffixes for an expert's final answer (`|pred` is MMLU-Pro's name)."""


def column_kind(column: str) -> tuple[str, str]:
    """(expert, what) of an outcomes CSV column: what is "score", "cost", "answer" or, for
    any other `<expert>|<suffix>` column (MMLU-Pro's `|out_chars`), "other"."""
    if column.endswith(COST_SUFFIX):
        return column[: -len(COST_SUFFIX)], "cost"
    for suffix in ANSWER_SUFFIXES:
        if column.endswith(suffix):
            return column[: -len(suffix)], "answer"
    if "|" in column:
        return column.split("|", 1)[0], "other"
    return column, "score"


def json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
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


def parse_number(value: Any, where: str, what: str) -> float:
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


@dataclass(frozen=True)
class OutcomeTable:
    """An outcomes CSV read: the reserved columns per row, and the expert columns as arrays."""

    rows: list[tuple[str, dict[str, str]]]
    """(where, the reserved columns' cells) per data row; where = "file:line"."""
    experts: tuple[str, ...]
    scores: npt.NDArray[np.float64]
    costs: npt.NDArray[np.float64]
    answers: npt.NDArray[np.str_] | None
    costs_given: bool


def read_outcome_table(
    path: Path, *, reserved: Sequence[str], default_cost: float = 1.0
) -> OutcomeTable:
    """Read an outcomes CSV: `reserved` columns as text, every other column by `column_kind`."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"{path}: {exc.strerror or exc}") from exc
    csv.field_size_limit(1 << 30)
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None) or []
        kinds = {c: column_kind(c) for c in header if c not in reserved}
        experts = tuple(e for e, what in kinds.values() if what == "score")
        if not experts:
            raise DatasetError(f"{path}:1: no expert score columns")
        unknown = [c for c, (e, what) in kinds.items() if what != "other" and e not in experts]
        if unknown:
            raise DatasetError(f"{path}:1: cost or answer columns for unknown experts: {unknown}")
        col = {name: i for i, name in enumerate(header)}
        cost_col = {e: col.get(e + COST_SUFFIX) for e in experts}
        answer_col = {
            e: next((col[e + s] for s in ANSWER_SUFFIXES if e + s in col), None) for e in experts
        }
        rows, scores, costs, answers = [], [], [], []
        for number, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            where = f"{path}:{number}"
            if len(row) != len(header):
                raise DatasetError(f"{where}: {len(row)} cells, the header has {len(header)}")
            rows.append((where, {c: row[col[c]] for c in reserved if c in col}))
            scores.append([parse_number(row[col[e]], where, f"score of {e!r}") for e in experts])
            costs.append([_cost(row, cost_col[e], e, where, default_cost) for e in experts])
            answers.append([row[i].strip() if i is not None else "" for i in answer_col.values()])
    if not rows:
        raise DatasetError(f"{path}: no rows")
    return OutcomeTable(
        rows=rows,
        experts=experts,
        scores=np.array(scores, dtype=np.float64),
        costs=np.array(costs, dtype=np.float64),
        answers=np.array(answers, dtype=np.str_) if any(answer_col.values()) else None,
        costs_given=any(i is not None for i in cost_col.values()),
    )


def _cost(row: Sequence[str], index: int | None, expert: str, where: str, default: float) -> float:
    cell = row[index] if index is not None else ""
    value = default if cell == "" else parse_number(cell, where, f"cost of {expert!r}")
    if value < 0:
        raise DatasetError(f"{where}: cost of {expert!r} is negative")
    return value
