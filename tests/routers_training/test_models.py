from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from routers.classifiers import HybridClassifier, LogisticClassifier, Queries
from routers.selection import adaptive_top_k, choose
from routers.training.fit_classifiers import (
    CentroidHyper,
    HybridHyper,
    KnnHyper,
    LogisticHyper,
    MlpHyper,
)
from routers.training.fit_coe import fit_coe_map
from routers.training.fit_scorers import HeadsHyper, KnnScorerHyper, MfHyper
from routers.training.operating import constrained_point, operating_point, sweep
from routers.training.tfidf import fit_vocabulary, sparse_matrix
from tests.routers_training.conftest import clusters


def q(x: np.ndarray) -> Queries:
    """Embeddings whose texts do not matter (every kind but the hybrid reads vectors only)."""
    return Queries([""] * len(x), x)


@pytest.mark.parametrize(
    "fit",
    [
        lambda x, y: LogisticHyper(c=10.0).fit(q(x), y, 4),
        lambda x, y: MlpHyper(hidden=(16,), max_iter=300).fit(q(x), y, 4),
        lambda x, y: KnnHyper(k=5).fit(q(x), y, 4),
        lambda x, y: CentroidHyper().fit(q(x), y, 4),
    ],
    ids=["logistic", "mlp", "knn", "centroid"],
)
def test_classifiers_learn_and_round_trip(fit: Any) -> None:
    x, y = clusters()
    model = fit(x[::2], y[::2])
    probs = model.predict_proba(q(x[1::2]))
    assert probs.shape == (60, 4)  # the 4th class never occurs in training
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert (probs.argmax(axis=1) == y[1::2]).mean() > 0.95
    assert probs[:, 3].max() < 0.05
    again = type(model).from_arrays(model.to_arrays(), model.params())
    assert np.array_equal(again.predict_proba(q(x[1::2])), probs)


def test_temperature_flattens_but_keeps_the_argmax() -> None:
    x, y = clusters()
    model = LogisticHyper(c=10.0).fit(q(x), y, 3)
    hot = LogisticClassifier(model.weights, model.bias, temperature=5.0)
    p, r = model.predict_proba(q(x)), hot.predict_proba(q(x))
    assert np.array_equal(p.argmax(1), r.argmax(1)) and r.max(1).mean() < p.max(1).mean()
    assert np.array_equal(model.with_temperature(5.0).predict_proba(q(x)), r)


def test_tfidf_matches_scikit_learn() -> None:
    docs = ["The cat sat on the mat.", "Dogs and cats!", "A mat for the dog", "the the cat", "x"]
    for analyzer, ngram in [("word", (1, 2)), ("char_wb", (2, 4))]:
        mine = fit_vocabulary(docs, analyzer, ngram, max_features=None, min_df=1)
        ref = TfidfVectorizer(analyzer=analyzer, ngram_range=ngram, sublinear_tf=True).fit(docs)
        new = ["the cat and the dog on a mat", "zzz", "Cats"]
        got = sparse_matrix(mine.transform(new), len(mine)).toarray()
        assert np.allclose(got, ref.transform(new).toarray(), atol=1e-6)


def test_tfidf_on_too_few_queries_says_what_to_do() -> None:
    with pytest.raises(ValueError, match="TF-IDF vocabulary is empty: give more queries"):
        fit_vocabulary(["integrate x", "fall of rome"], "word", (1, 2), min_df=2)


def test_hybrid_classifier_uses_words_and_round_trips() -> None:
    texts = [f"{w} question number {i}" for i in range(30) for w in ("tort", "enzyme")]
    y = np.array([0, 1] * 30, dtype=np.int64)
    x = np.ones((60, 4), dtype=np.float32) / 2.0  # embeddings carry no signal here
    model = HybridHyper(word_features=100, char_features=200).fit(Queries(texts, x), y, 2)
    asked = Queries(["a tort case", "which enzyme"], x[:2])
    probs = model.predict_proba(asked)
    assert probs.argmax(1).tolist() == [0, 1]
    again = HybridClassifier.from_arrays(model.to_arrays(), model.params())
    assert np.array_equal(again.predict_proba(asked), probs)


def outcome_clusters() -> tuple[np.ndarray, np.ndarray]:
    """Expert 0 is right on cluster 0, expert 1 on cluster 1, expert 2 (costly) on both."""
    x, y = clusters(n_per=60)
    scores = np.zeros((len(y), 3))
    scores[y == 0, 0] = 1
    scores[y == 1, 1] = 1
    scores[y != 2, 2] = 1
    scores[::7, 2] = np.nan  # missing outcomes are ignored, not learnt as failures
    return x, scores


@pytest.mark.parametrize(
    "fit",
    [
        lambda x, s: HeadsHyper(l2=1e-4).fit(x, s),
        lambda x, s: MfHyper(rank=4, l2=1e-4).fit(x, s),
        lambda x, s: KnnScorerHyper(k=10).fit(x, s),
    ],
    ids=["heads", "mf", "knn"],
)
def test_scorers_learn_who_is_good_where(fit: Any) -> None:
    x, scores = outcome_clusters()
    model = fit(x[::2], scores[::2])
    q = model.predict(x[1::2])
    labels = np.repeat(np.arange(3), 60)[1::2]
    assert q[labels == 0, 0].mean() > 0.8 and q[labels == 0, 1].mean() < 0.2
    assert q[labels == 1, 1].mean() > 0.8 and q[labels == 2, 2].mean() < 0.2
    again = type(model).from_arrays(model.to_arrays(), model.params())
    assert np.array_equal(again.predict(x[1::2]), q)


def test_choose_trades_quality_for_cost() -> None:
    quality = np.array([[0.6, 0.9], [0.9, 0.91]])
    costs = np.array([1.0, 10.0])
    assert choose(quality, costs, 0.0).tolist() == [1, 1]
    assert choose(quality, costs, 0.01).tolist() == [1, 0]
    assert choose(quality, costs, 1.0).tolist() == [0, 0]
    assert choose(np.array([[0.5, 0.5]]), costs, 0.0).tolist() == [0]  # a tie goes to the cheaper


def test_operating_point_for_max_cost_and_min_quality() -> None:
    quality = np.array([[0.6, 0.9], [0.9, 0.91], [0.2, 0.8]])
    scores = np.array([[0, 1], [1, 1], [0, 1]], dtype=float)
    curve = sweep(quality, np.array([1.0, 10.0]), scores)
    cheap = operating_point(curve, max_cost=4.0)
    assert cheap.cost <= 4.0 and cheap.quality == pytest.approx(2 / 3)
    good = operating_point(curve, min_quality=1.0)
    assert good.quality == 1.0 and good.cost == pytest.approx(7.0)
    with pytest.raises(ValueError, match="no operating point costs"):
        operating_point(curve, max_cost=0.5)
    with pytest.raises(ValueError, match="exactly one"):
        operating_point(curve)


def test_constrained_point_refines_between_grid_weights() -> None:
    # 200 queries whose quality gaps lie in a band narrower than one step of the coarse grid:
    # the grid goes from (nearly) every query on the expensive expert to none in one step
    gap = np.linspace(0.50, 0.56, 200)
    quality = np.stack([np.full(200, 0.2), 0.2 + gap], axis=1)
    scores = np.stack([np.zeros(200), np.ones(200)], axis=1)
    costs = np.array([1.0, 10.0])
    coarse = operating_point(sweep(quality, costs, scores), max_cost=5.5)
    fine = constrained_point(quality, costs, scores, max_cost=5.5)
    assert fine.cost <= 5.5 and fine.cost > 5.0 and fine.cost > coarse.cost + 1.0
    assert fine.quality > coarse.quality
    cheapest = constrained_point(quality, costs, scores, min_quality=0.5)
    assert 0.5 <= cheapest.quality < 0.55 and cheapest.cost < 6.0
    assert constrained_point(quality, costs, scores, max_cost=5.5, refine=0) == coarse
    with pytest.raises(ValueError, match="no operating point costs"):
        constrained_point(quality, costs, scores, max_cost=0.5)


def test_adaptive_top_k() -> None:
    probs = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.5, 0.5, 0.0]])
    assert adaptive_top_k(probs, 0.8).tolist() == [1, 3, 2]
    assert adaptive_top_k(probs, 0.8, max_k=2).tolist() == [1, 2, 2]
    assert adaptive_top_k(probs, 1.0).tolist() == [3, 3, 2]
    with pytest.raises(ValueError, match="mass"):
        adaptive_top_k(probs, 0.0)


def test_coe_map_respects_the_budget() -> None:
    labels = ["math"] * 50 + ["law"] * 50
    # expert 0 cheap and good at law; expert 1 dear, best at both; expert 2 mid, good at math
    scores = np.zeros((100, 3))
    scores[50:, 0] = 0.7
    scores[:, 1] = 0.9
    scores[:50, 2] = 0.8
    costs = np.tile([1.0, 10.0, 4.0], (100, 1))
    best = fit_coe_map(labels, scores, costs, ["a", "b", "c"])
    assert best.as_dict() == {"law": "b", "math": "b"}
    tight = fit_coe_map(labels, scores, costs, ["a", "b", "c"], max_cost=2.5)
    assert tight.as_dict() == {"law": "a", "math": "c"} and tight.expected_cost() == 2.5
    mid = fit_coe_map(labels, scores, costs, ["a", "b", "c"], max_cost=7.0)
    assert mid.expected_cost() <= 7.0 and mid.as_dict() == {"law": "b", "math": "c"}
    probs = np.array([[0.5, 0.5]])  # categories sorted: law, math
    assert np.allclose(best.expected_quality(probs), [[0.35, 0.9, 0.4]])


def test_coe_map_treats_missing_outcomes_as_unknown_not_wrong() -> None:
    labels = ["chemistry"] * 40 + ["law"] * 40
    scores = np.full((80, 2), 0.5)  # a: right half the time everywhere
    scores[:, 1] = np.nan  # b: measured on 10 chemistry questions (all right) ...
    scores[:10, 1] = 1.0
    scores[40:41, 1] = 1.0  # ... and on a single law question
    costs = np.ones((80, 2))
    coe = fit_coe_map(labels, scores, costs, ["a", "b"])
    # counting the 30 unmeasured chemistry rows as failures would give b 0.25 and pick a
    assert coe.as_dict()["chemistry"] == "b"
    # one outcome is shrunk towards b's overall mean (1.0 here) by 5 pseudo-outcomes
    assert coe.quality[coe.categories.index("chemistry"), 1] == pytest.approx(1.0)
    sparse = scores.copy()
    sparse[:10, 1] = 0.0
    sparse[:2, 1] = 1.0  # b: 3 of 11 right overall, the law one among them
    coe = fit_coe_map(labels, sparse, costs, ["a", "b"])
    overall = 3 / 11
    law = (1.0 + 5 * overall) / 6
    assert coe.quality[coe.categories.index("law"), 1] == pytest.approx(law)
    assert coe.as_dict() == {"chemistry": "a", "law": "a"}  # law: 0.45 < a's 0.5


def test_sweep_decides_on_expected_costs_and_reports_realised_ones() -> None:
    quality = np.array([[0.5, 0.9], [0.5, 0.9]])
    expected = np.array([1.0, 2.0])
    realised = np.array([[1.0, 10.0], [1.0, 0.0]])  # the second call happened to be free
    scores = np.array([[0.0, 1.0], [0.0, 1.0]])
    (point,) = sweep(quality, expected, scores, [0.1], realised_costs=realised)
    assert point.quality == 1.0 and point.cost == 5.0  # both sent to expert 1, as 0.9-0.2 > 0.5-0.1
