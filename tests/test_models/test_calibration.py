"""Calibration on the margin: strictly increasing (never ties leads the trees tell apart), right on average."""

import copy

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit, logit
from sklearn.isotonic import IsotonicRegression

from leadscore.models.calibration import MIN_SLOPE, MarginCalibrator
from leadscore.models.conversion import ConversionModel
from leadscore.models.linear import LinearConversionModel
from tests.test_models.test_conversion import synthetic


def test_centred_isotonic_puts_one_knot_at_the_mean_margin_of_each_step():
    # with one pretend conversion at the lowest margin and one pretend loss at the highest, the isotonic steps are
    # {0, 0, 1} -> 1/3, {2, 3} -> 1/2 and {4, 5, 5} -> 2/3
    margin = np.array([0.0, 1, 2, 3, 4, 5])
    y = np.array([0, 0, 1, 0, 1, 1])
    calibrator = MarginCalibrator("isotonic").fit(margin, y)
    np.testing.assert_allclose(calibrator.knots_, [1 / 3, 2.5, 14 / 3])
    np.testing.assert_allclose(calibrator.probabilities_, [1 / 3, 1 / 2, 2 / 3])
    # between knots: a straight line
    p = calibrator.predict(np.array([1 / 3, (1 / 3 + 2.5) / 2, 2.5, 14 / 3]))
    np.testing.assert_allclose(p, [1 / 3, 5 / 12, 0.5, 2 / 3])
    # beyond the outer knots the line goes on with the Platt slope: still increasing, never 0 or 1
    outside = calibrator.predict(np.array([-20.0, -1.0, 1 / 3, 14 / 3, 6.0, 20.0]))
    assert np.all(np.diff(outside) > 0) and outside[0] > 0 and outside[-1] < 1


def test_a_fold_that_plain_isotonic_flattens_keeps_its_order():
    # the highest margins converted least: plain isotonic regression pools the fold into two values (ROC AUC near
    # 0.5), the centred calibrator keeps the booster's order
    rng = np.random.default_rng(3)
    margin = np.sort(rng.normal(-2, 0.5, 1000))
    y = (rng.random(1000) < np.linspace(0.2, 0.05, 1000)).astype(int)
    plain = IsotonicRegression(out_of_bounds="clip").fit(margin, y).predict(margin)
    assert len(np.unique(plain)) <= 2
    for method in ("isotonic", "sigmoid"):
        p = MarginCalibrator(method).fit(margin, y).predict(margin)
        assert np.all(np.diff(p) > 0), method
        assert p.mean() == pytest.approx(y.mean(), rel=0.05), method


def test_a_margin_that_does_not_rank_gets_a_small_slope_and_the_folds_rate():
    margin = np.array([0.0, 1, 2, 3, 4, 5, 6, 7])
    y = np.array([1, 1, 0, 1, 0, 0, 1, 0])  # higher margins convert less: Platt's slope would be negative
    calibrator = MarginCalibrator("sigmoid").fit(margin, y)
    assert calibrator.slope_ == MIN_SLOPE
    p = calibrator.predict(margin)
    assert np.all(np.diff(p) > 0)
    assert p.mean() == pytest.approx(0.5, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(-800, 800), st.booleans()), min_size=4, max_size=300).filter(
        lambda rows: len({y for _, y in rows}) == 2
    ),
    method=st.sampled_from(["sigmoid", "isotonic"]),
)
def test_no_calibrated_fold_ties_more_leads_than_the_raw_margin(rows, method):
    margin = np.array([m / 100 for m, _ in rows])  # margins within +-8 log-odds, as boosters give
    y = np.array([int(v) for _, v in rows])
    p = MarginCalibrator(method).fit(margin, y).predict(margin)
    assert len(np.unique(p)) == len(np.unique(margin))
    order = np.argsort(margin, kind="stable")
    assert np.all(np.diff(p[order]) >= 0)


def test_the_calibrator_ignores_the_lead_weights_and_matches_the_rows_as_they_come():
    # converting rows weigh five times as much (as leads with few snapshots do): a weighted calibrator would put the
    # mean probability near the weighted rate; the model's must match the rows' own rate on the calibration fold
    X, y, times = synthetic(4000, seed=1)
    weight = np.where(y == 1, 5.0, 1.0)
    model = ConversionModel(
        n_estimators=60, min_positives=5, min_negatives=5, early_stopping_rounds=10, calibration="sigmoid", refit=False
    )
    model.fit(X, y, sample_time=times, sample_weight=weight)
    _, _, calibration = model._folds(len(X), times)
    p = model.predict_proba(X.iloc[calibration])[:, 1]
    observed = y.iloc[calibration].mean()
    weighted = np.average(y.iloc[calibration], weights=weight[calibration])
    assert p.mean() == pytest.approx(observed, abs=0.002)
    assert weighted > observed + 0.1


def test_beyond_the_fold_the_log_odds_move_at_most_one_for_one_with_the_margin():
    # an under-confident margin (true log-odds 2 x margin): Platt's slope is about 2 inside the fold, but past the
    # highest margin the fold saw the calibrated log-odds rise no faster than the margin itself
    rng = np.random.default_rng(0)
    margin = rng.uniform(-2, 1, 5000)
    y = (rng.random(5000) < expit(2 * margin)).astype(int)
    for method in ("sigmoid", "isotonic"):
        calibrator = MarginCalibrator(method).fit(margin, y)
        assert calibrator.slope_ == pytest.approx(2, rel=0.15) and calibrator.tail_slope_ == 1.0
        top = calibrator.knots_[-1]
        step = logit(calibrator.predict(np.array([top + 3.0]))) - logit(calibrator.predict(np.array([top])))
        assert step == pytest.approx(3.0, abs=1e-9), method
    # an over-confident margin keeps its shrinking slope beyond the fold too
    y = (rng.random(5000) < expit(0.5 * margin)).astype(int)
    calibrator = MarginCalibrator("sigmoid").fit(margin, y)
    assert calibrator.tail_slope_ == calibrator.slope_ < 1


def test_the_sigmoid_is_platt_inside_the_fold():
    margin = np.array([-2.0, -1, 0, 1, 2, 3])
    y = np.array([0, 0, 1, 0, 1, 1])
    calibrator = MarginCalibrator("sigmoid").fit(margin, y)
    np.testing.assert_allclose(calibrator.knots_, [-2.0, 3.0])
    a, b = calibrator.slope_, logit(calibrator.probabilities_[0]) + 2.0 * calibrator.slope_
    inside = np.linspace(-2, 3, 11)
    np.testing.assert_allclose(calibrator.predict(inside), expit(a * inside + b), rtol=1e-12)


def test_align_moves_the_mean_to_the_rate_and_keeps_the_order():
    rng = np.random.default_rng(1)
    margin = rng.normal(-1, 1, 2000)
    y = (rng.random(2000) < expit(margin)).astype(int)
    for method in ("sigmoid", "isotonic"):
        calibrator = MarginCalibrator(method).fit(margin, y)
        fitted = copy.deepcopy(calibrator)
        shifted = margin + 0.7  # the refitted model's margins: higher on the same rows
        calibrator.align(shifted, float(y.mean()))
        after = calibrator.predict(shifted)
        assert after.mean() == pytest.approx(y.mean(), abs=1e-9), method
        assert calibrator.shift_ == pytest.approx(0.7, abs=0.05), method
        # the same map, moved along the margin by the shift
        np.testing.assert_allclose(after, fitted.predict(shifted - calibrator.shift_), rtol=1e-12)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        calibrator.align(margin, 0.0)


def test_the_refitted_model_is_right_on_average_on_the_calibration_fold():
    # the rate climbs through time: the map is fitted on a model that never saw the calibration fold, the model
    # served is refitted on every row; aligned, its mean on that fold is the fold's own rate, not the rate moved twice
    X, y, times = synthetic(4000, seed=2)
    rng = np.random.default_rng(2)
    y = pd.Series(np.where(rng.random(4000) < np.linspace(0, 0.3, 4000), 1, y))
    for family in (ConversionModel, LinearConversionModel):
        model = family(min_positives=5, min_negatives=5, calibration="sigmoid", refit=True)
        if family is ConversionModel:
            model.set_params(n_estimators=60, early_stopping_rounds=10)
        model.fit(X, y, sample_time=times)
        _, _, calibration = model._folds(len(X), times)
        p = model.predict_proba(X.iloc[calibration])[:, 1]
        assert p.mean() == pytest.approx(y.iloc[calibration].mean(), abs=1e-9), family.__name__
