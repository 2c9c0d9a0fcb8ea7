"""Which rows fit a router, which choose its temperature and operating point, which report it.

    data ──► train rows ──► fit rows     the model is fitted here
        │               └─► val rows     temperature and operating point (cost weight) chosen here
        └──► dev rows                    every reported metric (stored in the manifest)

The dev split is a seeded, label-stratified share of the rows (or the split that ships with the
data, e.g. RouterDC's `test`, with `predefined=True`). The manifest records the `SplitSpec`, so
`evaluate` re-derives the same dev rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from routers.training.datasets import LabelledQueries, RoutingOutcomes, train_dev_split

__all__ = ["Rows", "SplitSpec", "scorable", "split_rows"]

Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SplitSpec:
    dev_fraction: float = 0.2
    val_fraction: float = 0.2
    seed: int = 0
    predefined: bool = False
    """Use the data's own split column (`test` = dev) instead of a seeded one."""

    def to_json(self) -> dict[str, Any]:
        return {
            "dev_fraction": self.dev_fraction,
            "val_fraction": self.val_fraction,
            "seed": self.seed,
            "predefined_split": self.predefined,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SplitSpec:
        return cls(
            dev_fraction=float(data["dev_fraction"]),
            val_fraction=float(data["val_fraction"]),
            seed=int(data["seed"]),
            predefined=bool(data["predefined_split"]),
        )


@dataclass(frozen=True)
class Rows:
    fit: Ints
    val: Ints
    dev: Ints

    def train(self) -> Ints:
        """Fit and val rows together, sorted."""
        return np.sort(np.concatenate([self.fit, self.val]))


def split_rows(data: LabelledQueries | RoutingOutcomes, spec: SplitSpec) -> Rows:
    """The (fit, val, dev) rows of `data` under `spec`."""
    labels = data.labels
    if spec.predefined:
        split = data.split if isinstance(data, RoutingOutcomes) else None
        if split is None:
            raise ValueError("the data has no split column to use (predefined_split)")
        dev = np.array([i for i, s in enumerate(split) if s == "test"], dtype=np.int64)
        train_rows = np.array([i for i, s in enumerate(split) if s == "train"], dtype=np.int64)
    else:
        train_rows, dev = train_dev_split(len(data), spec.dev_fraction, spec.seed, labels)
    strata = None if labels is None else [labels[i] for i in train_rows]
    fit_i, val_i = train_dev_split(len(train_rows), spec.val_fraction, spec.seed + 1, strata)
    return Rows(train_rows[fit_i], train_rows[val_i], dev)


def scorable(data: RoutingOutcomes, rows: Ints, what: str) -> Ints:
    """`rows` restricted to those with every expert's outcome (see `complete_rows`)."""
    kept = np.intersect1d(rows, data.complete_rows())
    if len(kept) == 0:
        raise ValueError(
            f"no {what} row has an outcome for every expert, so no routing decision can be "
            "scored; give complete outcomes for some queries, or count a missing outcome as a "
            "failure (--missing-as-failure)"
        )
    return kept
