"""Training data for routers: labelled queries and routing outcomes, with loaders and splits.

Two generic kinds of data users bring:

    LabelledQueries   text -> category label          (category classifiers)
    RoutingOutcomes   text -> per-expert score, cost  (expert scorers, CoE maps, evaluation)

File formats::

    labelled JSONL   {"text": "...", "label": "math"}            one object a line
    outcomes JSONL   {"text": "...", "scores": {"a": 1, "b": 0}, "costs": {"a": 0.2, "b": 3.0},
                      "label": "math", "id": "q1", "split": "train"}
                                                      costs, label, id and split optional
    outcomes CSV     text[,id][,label],<expert>...,[<expert>|cost...]

A score is any number where higher is better (0/1 correctness, a judge grade scaled to 0-1); an
empty cell or a missing key is NaN ("no outcome"). `split` ("train" / "test") is the split that
ships with the data, used with `predefined_split`. The benchmark folders of the shared data are
read by `bench.shared_data`, which also exports them to these formats.

Errors are `DatasetError`, naming the file and line.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "COST_SUFFIX",
    "DatasetError",
    "LabelledQueries",
    "RoutingOutcomes",
    "load_labelled",
    "load_labelled_jsonl",
    "load_outcomes",
    "load_outcomes_csv",
    "load_outcomes_jsonl",
    "train_dev_split",
]

COST_SUFFIX = "|cost"
"""CSV column suffix for an expert's per-query cost (`gpt-4|cost`)."""

Floats = npt.NDArray[np.float64]
Indices = npt.NDArray[np.int64]


class DatasetError(ValueError):
    """A data file that cannot be used; the message names the file and, when known, the line."""


def _hash_update(digest: Any, *parts: str) -> None:
    for part in parts:
        data = part.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)


@dataclass(frozen=True)
class LabelledQueries:
    """Queries with one category label each."""

    texts: tuple[str, ...]
    labels: tuple[str, ...]
    ids: tuple[str, ...]
    name: str = ""

    def __post_init__(self) -> None:
        if not len(self.texts) == len(self.labels) == len(self.ids):
            raise DatasetError(f"{self.name}: texts, labels and ids differ in length")

    def __len__(self) -> int:
        return len(self.texts)

    def label_set(self) -> tuple[str, ...]:
        """The labels, sorted: the class order of every classifier trained on this data."""
        return tuple(sorted(set(self.labels)))

    def label_indices(self, label_set: Sequence[str] | None = None) -> Indices:
        order = {label: i for i, label in enumerate(label_set or self.label_set())}
        try:
            return np.array([order[label] for label in self.labels], dtype=np.int64)
        except KeyError as exc:
            raise DatasetError(f"{self.name}: label {exc.args[0]!r} not in the label set") from exc

    def subset(self, rows: Sequence[int] | Indices) -> LabelledQueries:
        picked = [int(i) for i in rows]
        return LabelledQueries(
            tuple(self.texts[i] for i in picked),
            tuple(self.labels[i] for i in picked),
            tuple(self.ids[i] for i in picked),
            self.name,
        )

    def data_hash(self) -> str:
        """SHA-256 over (text, label) pairs in order: identifies the training data."""
        digest = hashlib.sha256(b"labelled\0")
        for text, label in zip(self.texts, self.labels, strict=True):
            _hash_update(digest, text, label)
        return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class RoutingOutcomes:
    """Per-query, per-expert scores (higher is better; NaN = no outcome) and costs.

    `scores` and `costs` have shape (n_queries, n_experts), columns in `experts` order.
    `labels` (a category or task per query) is optional; it enables CoE category maps and
    stratified splits. `split` carries a split that ships with the data (RouterDC's).
    """

    texts: tuple[str, ...]
    ids: tuple[str, ...]
    experts: tuple[str, ...]
    scores: Floats
    costs: Floats
    labels: tuple[str, ...] | None = None
    split: tuple[str, ...] | None = None
    name: str = ""
    cost_unit: str = ""

    def __post_init__(self) -> None:
        n, m = len(self.texts), len(self.experts)
        if len(self.ids) != n:
            raise DatasetError(f"{self.name}: {len(self.ids)} ids for {n} texts")
        if len(set(self.experts)) != m:
            raise DatasetError(f"{self.name}: duplicate expert names")
        for what, array in (("scores", self.scores), ("costs", self.costs)):
            if array.shape != (n, m):
                raise DatasetError(f"{self.name}: {what} has shape {array.shape}, not {(n, m)}")
        if np.any(self.costs < 0) or not np.all(np.isfinite(self.costs)):
            raise DatasetError(f"{self.name}: costs must be finite and >= 0")
        for what, column in (("labels", self.labels), ("split", self.split)):
            if column is not None and len(column) != n:
                raise DatasetError(f"{self.name}: {len(column)} {what} for {n} texts")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, rows: Sequence[int] | Indices) -> RoutingOutcomes:
        picked = np.asarray(rows, dtype=np.int64)
        pick = [int(i) for i in picked]
        return RoutingOutcomes(
            texts=tuple(self.texts[i] for i in pick),
            ids=tuple(self.ids[i] for i in pick),
            experts=self.experts,
            scores=self.scores[picked],
            costs=self.costs[picked],
            labels=None if self.labels is None else tuple(self.labels[i] for i in pick),
            split=None if self.split is None else tuple(self.split[i] for i in pick),
            name=self.name,
            cost_unit=self.cost_unit,
        )

    def select_experts(self, experts: Sequence[str]) -> RoutingOutcomes:
        """The same queries with only `experts` (in that order)."""
        missing = [e for e in experts if e not in self.experts]
        if missing:
            raise DatasetError(f"{self.name}: unknown experts {missing}")
        cols = [self.experts.index(e) for e in experts]
        return RoutingOutcomes(
            self.texts,
            self.ids,
            tuple(experts),
            self.scores[:, cols],
            self.costs[:, cols],
            self.labels,
            self.split,
            self.name,
            self.cost_unit,
        )

    def filled_scores(self, missing: float = 0.0) -> Floats:
        """Scores with NaN ("no outcome") replaced by `missing` (default: counted as a failure)."""
        return np.where(np.isnan(self.scores), missing, self.scores)

    def complete_rows(self) -> Indices:
        """Rows with an outcome for every expert: the only rows on which any routing decision
        can be scored (a missing outcome is unknown, not a failure)."""
        return np.flatnonzero(~np.isnan(self.scores).any(axis=1)).astype(np.int64)

    def mean_costs(self) -> Floats:
        """Average cost of each expert over the queries."""
        return np.asarray(self.costs.mean(axis=0), dtype=np.float64)

    def labelled(self) -> LabelledQueries:
        if self.labels is None:
            raise DatasetError(
                f"{self.name}: these outcomes carry no category labels; give each query a "
                "`label` (JSONL field or CSV column) to train or score a category classifier "
                "or the coe router on them"
            )
        return LabelledQueries(self.texts, self.labels, self.ids, self.name)

    def data_hash(self) -> str:
        digest = hashlib.sha256(b"outcomes\0")
        _hash_update(digest, *self.experts)
        for text in self.texts:
            _hash_update(digest, text)
        for array in (self.scores, self.costs):
            digest.update(np.ascontiguousarray(array, dtype="<f8").tobytes())
        if self.labels is not None:
            _hash_update(digest, *self.labels)
        return digest.hexdigest()


def train_dev_split(
    n: int,
    dev_fraction: float = 0.2,
    seed: int = 0,
    stratify: Sequence[str] | None = None,
) -> tuple[Indices, Indices]:
    """Deterministic (train, dev) row indices, both sorted; stratified by label when given.

    Each stratum contributes round(fraction * size) rows to dev (at least one when it has two or
    more rows), drawn with `numpy.random.default_rng(seed)`.
    """
    if not 0.0 < dev_fraction < 1.0:
        raise ValueError("dev_fraction must be in (0, 1)")
    rng = np.random.default_rng(seed)
    strata: dict[str, list[int]] = {}
    for i in range(n):
        strata.setdefault("" if stratify is None else stratify[i], []).append(i)
    dev: list[int] = []
    for key in sorted(strata):
        rows = np.array(strata[key], dtype=np.int64)
        take = round(dev_fraction * len(rows))
        if len(rows) >= 2:
            take = min(max(take, 1), len(rows) - 1)
        dev.extend(int(i) for i in rng.permutation(rows)[:take])
    dev_idx = np.array(sorted(dev), dtype=np.int64)
    mask = np.ones(n, dtype=bool)
    mask[dev_idx] = False
    return np.flatnonzero(mask).astype(np.int64), dev_idx


# --- generic files -------------------------------------------------------------------------


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
