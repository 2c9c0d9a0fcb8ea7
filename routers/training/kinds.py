"""What `coe train --router KIND` can train, and the typed hyper-parameters of each kind.

kind         family      learns from         hyper-parameters
logistic     classifier  labelled queries    LogisticHyper(c, max_iter)
mlp          classifier  labelled queries    MlpHyper(hidden, alpha, max_iter, seed)
knn          classifier  labelled queries    KnnHyper(k, tau)
centroid     classifier  labelled queries    CentroidHyper(scale)
hybrid       classifier  labelled queries    HybridHyper(c, word_features, char_features, ...)
coe          scorer      routing outcomes    HybridHyper (its category classifier)
heads        scorer      routing outcomes    HeadsHyper(l2, max_iter)
mf           scorer      routing outcomes    MfHyper(rank, l2, max_iter, seed)
knn-scorer   scorer      routing outcomes    KnnScorerHyper(k, tau, prior_weight)
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, TypeGuard

from routers.artifact import ArtifactFamily
from routers.classifiers import ClassifierKind
from routers.scorers import ScorerKind
from routers.training.fit_classifiers import CLASSIFIER_HYPER, ClassifierHyper, HybridHyper
from routers.training.fit_scorers import SCORER_HYPER, ScorerHyper

__all__ = ["Hyper", "TrainKind", "hyper_for", "is_classifier_hyper", "is_scorer_hyper"]

Hyper = ClassifierHyper | ScorerHyper


class TrainKind(enum.StrEnum):
    LOGISTIC = "logistic"
    MLP = "mlp"
    KNN = "knn"
    CENTROID = "centroid"
    HYBRID = "hybrid"
    COE = "coe"
    HEADS = "heads"
    MF = "mf"
    KNN_SCORER = "knn-scorer"

    @property
    def family(self) -> ArtifactFamily:
        return ArtifactFamily.CLASSIFIER if self.classifier is not None else ArtifactFamily.SCORER

    @property
    def needs_outcomes(self) -> bool:
        """Scorers learn from routing outcomes (a score per expert for each query)."""
        return self.family is ArtifactFamily.SCORER

    @property
    def classifier(self) -> ClassifierKind | None:
        """The classifier this kind trains, if it is a classifier kind."""
        return ClassifierKind(self.value) if self.value in set(ClassifierKind) else None

    @property
    def scorer(self) -> ScorerKind | None:
        """The direct scorer this kind trains (not `coe`: a classifier plus a table)."""
        return {
            TrainKind.HEADS: ScorerKind.HEADS,
            TrainKind.MF: ScorerKind.MF,
            TrainKind.KNN_SCORER: ScorerKind.KNN,
        }.get(self)

    @property
    def hyper_class(self) -> type[Hyper]:
        if self.classifier is not None:
            return CLASSIFIER_HYPER[self.classifier]
        if self.scorer is not None:
            return SCORER_HYPER[self.scorer]
        return HybridHyper  # coe: its hybrid category classifier


def hyper_for(kind: TrainKind | str, **values: Any) -> Hyper:
    """The hyper-parameters of `kind`, defaults overridden by `values`; a `ValueError` names a
    value the kind does not have."""
    hyper_class = TrainKind(kind).hyper_class
    known = {f.name for f in dataclasses.fields(hyper_class)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"router kind {TrainKind(kind).value!r} has no hyper-parameter "
            f"{', '.join(map(repr, unknown))} (it has {', '.join(sorted(known))})"
        )
    return hyper_class(**values)


def is_classifier_hyper(hyper: Hyper) -> TypeGuard[ClassifierHyper]:
    return isinstance(hyper.kind, ClassifierKind)


def is_scorer_hyper(hyper: Hyper) -> TypeGuard[ScorerHyper]:
    return isinstance(hyper.kind, ScorerKind)
