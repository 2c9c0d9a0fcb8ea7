"""Routing outcomes from a folder: `questions.jsonl` + `outcomes.csv`, joined on `id`.

The layout of MMLU-Pro's evaluation logs (and of the project's shared data)::

    questions.jsonl   {"id": 70, "question": "...", "options": ["...", ...], "category": "math"}
    outcomes.csv      id,<expert>,...,<expert>|pred,...,<expert>|cost,...

The query text is `text`, else `prompt`, else `question` followed by its lettered `options`
("A. ...", one a line) when there are any; the label is `label`, else `category`. Scores, costs
and answers are read as in an outcomes CSV (`routers.training.loaders.read_outcome_table`);
other `<expert>|...` columns (`|out_chars`) are ignored. Questions without a row in
outcomes.csv are left out. Without cost columns every call costs 1 (`costs_given` False): give
per-expert costs with `load_expert_costs` (`coe train --costs`), or let `coe eval` take the
artifact's.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from routers.training.datasets import DatasetError, RoutingOutcomes
from routers.training.readers import json_lines, parse_number, read_outcome_table

__all__ = ["OUTCOMES", "QUESTIONS", "is_outcome_folder", "load_expert_costs", "load_outcome_folder"]

QUESTIONS = "questions.jsonl"
OUTCOMES = "outcomes.csv"
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def is_outcome_folder(path: Path) -> bool:
    return path.is_dir() and (path / QUESTIONS).is_file() and (path / OUTCOMES).is_file()


def _text(row: Mapping[str, Any], where: str) -> str:
    for field in ("text", "prompt"):
        if isinstance(row.get(field), str) and row[field].strip():
            return str(row[field])
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DatasetError(f"{where}: needs a non-empty 'text', 'prompt' or 'question'")
    options = row.get("options") or []
    if not isinstance(options, list) or len(options) > len(_LETTERS):
        raise DatasetError(f"{where}: 'options' must be a list of at most 26 strings")
    lines = [f"{_LETTERS[i]}. {option}" for i, option in enumerate(options)]
    return "\n".join([question, *lines])


def _label(row: Mapping[str, Any]) -> str | None:
    for field in ("label", "category"):
        value = row.get(field)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return None


def load_outcome_folder(folder: Path) -> RoutingOutcomes:
    """The folder's routing outcomes (module docstring); `DatasetError` names file and line."""
    if not is_outcome_folder(folder):
        raise DatasetError(f"{folder}: a folder of outcomes needs {QUESTIONS} and {OUTCOMES}")
    table = read_outcome_table(folder / OUTCOMES, reserved=("id",))
    line_of = {row.get("id", ""): i for i, (_, row) in enumerate(table.rows)}
    picked: list[int] = []
    texts: list[str] = []
    ids: list[str] = []
    labels: list[str | None] = []
    for line, row in json_lines(folder / QUESTIONS):
        qid = str(row.get("id", ""))
        if qid not in line_of:
            continue
        texts.append(_text(row, f"{folder / QUESTIONS}:{line}"))
        ids.append(qid)
        labels.append(_label(row))
        picked.append(line_of[qid])
    if not picked:
        raise DatasetError(f"{folder}: no question of {QUESTIONS} has a row in {OUTCOMES}")
    has_labels = all(label is not None for label in labels)
    return RoutingOutcomes(
        texts=tuple(texts),
        ids=tuple(ids),
        experts=table.experts,
        scores=table.scores[picked],
        costs=table.costs[picked],
        labels=tuple(str(label) for label in labels) if has_labels else None,
        name=folder.name,
        answers=None if table.answers is None else table.answers[picked],
        costs_given=table.costs_given,
    )


def load_expert_costs(path: Path) -> dict[str, float]:
    """Per-expert costs from a CSV with an `expert` (or `model`) column and a `cost` column."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            name = next((f for f in ("expert", "model") if f in fields), None)
            if name is None or "cost" not in fields:
                raise DatasetError(f"{path}:1: needs an 'expert' (or 'model') and a 'cost' column")
            costs: dict[str, float] = {}
            for line, row in enumerate(reader, start=2):
                value = parse_number(row["cost"], f"{path}:{line}", "cost")
                if not value >= 0:
                    raise DatasetError(f"{path}:{line}: cost must be a number >= 0")
                costs[row[name]] = value
    except OSError as exc:
        raise DatasetError(f"{path}: {exc.strerror or exc}") from exc
    if not costs:
        raise DatasetError(f"{path}: no rows")
    return costs
