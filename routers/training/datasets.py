"""Training data for routers: labelled queries and routing outcomes, and seeded splits.

Two generic kinds of data users bring:

    LabelledQueries   text -> category label          (category classifiers)
    RoutingOutcomes   text -> per-expert score, cost  (expert scorers, CoE maps, evaluation)

File formats::

    labelled JSONL   {"text": "...", "label": "math"}            one object a line
    outcomes JSONL   {"text": "...", "scores": {"a": 1, "b": 0}, "costs": {"a": 0.2, "b": 3.0},
                      "label": "math", "id": "q1", "split": "train"}
                                                      costs, label, id and split optional
    outcomes CSV     text[,id][,label],<expert>...,[<expert>|cost...][,<expert>|answer...]
    outcomes folder  questions.jsonl + outcomes.csv joined on `id` (`routers.training.folders`)

JSONL rows may also carry `"answers": {"a": "B", "b": "C"}`: each expert's final answer (a
letter, a number, a short text), which `coe eval --fusion` votes on. In CSV the answer columns
are `<expert>|answer` (or `<expert>|pred`, MMLU-Pro's name).

A score is any number where higher is better (0/1 correctness, a judge grade scaled to 0-1); an
empty cell or a missing key is NaN ("no outcome"). `split` ("train" / "test") is the split that
ships with the data, used with `predefined_split`. The benchmark folders of the shared data are
read by `bench.shared_data`, which also exports them to these formats. The files are read by
`routers.training.loaders`; a `DatasetError` names the file and line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DatasetError", "LabelledQueries", "RoutingOutcomes", "train_dev_split"]

Floats = npt.NDArray[np.float64]
Indices = npt.NDArray[np.int64]
Strings = npt.NDArray[np.str_]


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
    answers: Strings | None = None
    costs_given: bool = True

    def __post_init__(self) -> None:
        n, m = len(self.texts), len(self.experts)
        if self.answers is not None and self.answers.shape != (n, m):
            raise DatasetError(f"{self.name}: answers has shape {self.answers.shape}, not {(n, m)}")
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
            answers=None if self.answers is None else self.answers[picked],
            costs_given=self.costs_given,
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
            None if self.answers is None else self.answers[:, cols],
            self.costs_given,
        )

    def with_expert_costs(self, costs: Mapping[str, float], unit: str = "") -> RoutingOutcomes:
        """The experts that have a cost in `costs`, each costing that on every query."""
        kept = self.select_experts([e for e in self.experts if e in costs])
        per_expert = np.array([float(costs[e]) for e in kept.experts], dtype=np.float64)
        return replace(
            kept,
            costs=np.broadcast_to(per_expert, kept.costs.shape).copy(),
            costs_given=True,
            cost_unit=unit or kept.cost_unit,
        )

    def filled_scores(self, missing: float = 0.0) -> Floats:
        """Scores with NaN ("no outcome") replaced by `missing` (default: counted as a failure)."""
        return np.where(np.isnan(self.scores), missing, self.scores)

    def complete_rows(self) -> Indices:
        """Rows with an outcome for every expert: the only rows on which any routing decision
        can be scored (a missing outcome is unknown, not a failure)."""
        return np.flatnonzero(~np.isnan(self.scores).any(axis=1)).astype(np.int64)

    def mean_costs(self) -> Floats:
        """Average cost of each expert over the queries (exactly its cost where constant)."""
        if not len(self.costs):
            return np.zeros(len(self.experts))
        constant = (self.costs == self.costs[0]).all(axis=0)
        return np.asarray(
            np.where(constant, self.costs[0], self.costs.mean(axis=0)), dtype=np.float64
        )

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
