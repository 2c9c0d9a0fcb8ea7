from __future__ import annotations

import numpy as np
import pytest

from routers.probability import softmax
from routers.training.calibration import (
    IsotonicCalibration,
    calibrate_temperature,
    expected_calibration_error,
    fit_temperature,
)
from routers.training.evaluation import (
    CurvePoint,
    aiq,
    apgr,
    baseline_points,
    confusion_matrix,
    cost_at_quality,
    cpt,
    macro_f1,
    non_decreasing_convex_hull,
)
from routers.training.report import curve_metrics


def test_aiq_of_a_known_curve() -> None:
    c, q = np.array([0.0, 1.0]), np.array([0.5, 1.0])
    assert aiq(c, q, 0.0, 1.0) == pytest.approx(0.75)
    # a point under the hull changes nothing; a point above it lifts the area
    assert aiq(np.append(c, 0.5), np.append(q, 0.6), 0.0, 1.0) == pytest.approx(0.75)
    assert aiq(np.append(c, 0.5), np.append(q, 1.0), 0.0, 1.0) == pytest.approx(0.875)


def test_hull_is_flat_after_the_best_point() -> None:
    hc, hq = non_decreasing_convex_hull(np.array([0.0, 0.5, 1.0]), np.array([0.4, 0.9, 0.7]))
    assert hc.tolist() == [0.0, 0.5] and hq.tolist() == [0.4, 0.9]
    assert aiq(np.array([0.0, 0.5, 1.0]), np.array([0.4, 0.9, 0.7]), 0.0, 1.0) == pytest.approx(
        0.5 * (0.4 + 0.9) / 2 + 0.5 * 0.9
    )


def test_apgr_of_oracle_is_one_and_of_random_is_half() -> None:
    share = np.linspace(0, 1, 11)
    assert apgr(share, np.full(11, 0.8), 0.6, 0.8) == pytest.approx(1.0)
    assert apgr(share, 0.6 + 0.2 * share, 0.6, 0.8) == pytest.approx(0.5)


def test_cpt_interpolates() -> None:
    share = np.array([0.0, 0.5, 1.0])
    quality = np.array([0.6, 0.75, 0.8])
    assert cpt(share, quality, 0.6, 0.8, 0.5) == pytest.approx(1 / 3)
    assert cpt(share, quality, 0.6, 0.8, 0.8) == pytest.approx(0.5 + 0.5 * (0.76 - 0.75) / 0.05)
    assert cost_at_quality(share, quality, 0.9) is None


def test_confusion_and_macro_f1() -> None:
    true, pred = [0, 0, 1, 1, 2], [0, 1, 1, 1, 2]
    assert confusion_matrix(true, pred, 3).tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]
    assert macro_f1(true, pred, 3) == pytest.approx((2 / 3 + 0.8 + 1.0) / 3)


def test_baselines() -> None:
    scores = np.array([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [np.nan, 1.0]])
    costs = np.tile([1.0, 10.0], (4, 1))
    best, cheapest, rnd, oracle = baseline_points(scores, costs, ["small", "big"])
    assert (best.quality, best.cost) == (0.75, 10.0) and "big" in best.label
    assert (cheapest.quality, cheapest.cost) == (0.25, 1.0)
    assert rnd.quality == pytest.approx(0.5)
    assert oracle.quality == 0.75 and oracle.cost == pytest.approx((1 + 10 + 1 + 10) / 4)


def test_temperature_is_recovered() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 5))
    probs = softmax(logits / 2.0)
    labels = np.array([rng.choice(5, p=p) for p in probs])
    assert fit_temperature(logits, labels) == pytest.approx(2.0, rel=0.1)
    assert expected_calibration_error(probs, labels) < 0.03
    assert expected_calibration_error(softmax(logits), labels) > 0.1


def test_temperature_is_kept_only_where_it_lowers_the_ece() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 5))
    labels = np.array([rng.choice(5, p=p) for p in softmax(logits / 2.0)])
    t, report = calibrate_temperature(logits, labels)  # overconfident: scaling helps
    assert t == pytest.approx(2.0, rel=0.1) and report["val_ece_scaled"] < report["val_ece_raw"]
    # half the rows calibrated at confidence 0.6, half near-certain with 3 % confident mistakes:
    # the mistakes pull the NLL-optimal T above 1, which makes the first half underconfident
    n, k = 4000, 4
    top = rng.integers(0, k, n)
    first = np.arange(n) < n // 2
    logits = np.zeros((n, k))
    logits[np.arange(n), top] = np.where(first, np.log(0.6 / (0.4 / 3)), 12.0)
    right = rng.random(n) < np.where(first, 0.6, 0.97)
    labels = np.where(right, top, (top + 1 + rng.integers(0, k - 1, n)) % k)
    t, report = calibrate_temperature(logits, labels)
    assert t == 1.0 and report["fitted_temperature"] > 1.2
    assert report["val_ece_scaled"] > report["val_ece_raw"] and report["chosen"].startswith("none")


def test_isotonic_is_monotone_and_fits_steps() -> None:
    conf = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    correct = np.array([0, 1, 0, 1, 1, 1])
    iso = IsotonicCalibration.fit(conf, correct)
    grid = iso(np.linspace(0, 1, 50))
    assert np.all(np.diff(grid) >= 0)
    assert iso(np.array([0.95]))[0] == 1.0


def test_curve_metrics_two_models_and_equal_costs() -> None:

    scores = np.array([[1.0, 1.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    costs = np.tile([0.0, 1.0], (4, 1))  # weak is free, strong costs 1 call
    oracle_like = [CurvePoint(0.0, 0.5), CurvePoint(0.5, 1.0), CurvePoint(1.0, 0.75)]
    m = curve_metrics(oracle_like, scores, costs, ["weak", "strong"])
    assert m["strong"]["quality"] == 0.75 and m["weak"]["quality"] == 0.5
    assert m["cpt50"] == pytest.approx(0.125) and m["apgr"] > 1.0  # beats the strong model
    same = curve_metrics(oracle_like, scores, np.ones((4, 2)), ["weak", "strong"])
    assert same["aiq"] is None
