"""The 1-99 score: the calibrated probability against the model's base rate, 10 points per doubling of the odds."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadscore.models.scores import base_rate_of, percentile_in_run, probability_at_score, score_1_99


def odds_times(base: float, factor: float) -> float:
    odds = base / (1 - base) * factor
    return odds / (1 + odds)


def test_50_is_the_base_rate_and_every_10_points_double_the_odds():
    base = 0.04
    probability = np.array([base, odds_times(base, 2), odds_times(base, 4), odds_times(base, 0.5), 0.9999, 1e-9])
    assert score_1_99(probability, base).tolist() == [50, 60, 70, 40, 99, 1]
    # rounded down: just under the base rate is 49, just under four times its odds is 69
    assert score_1_99(np.array([base * 0.999, odds_times(base, 3.99)]), base).tolist() == [49, 69]


def test_missing_probabilities_score_minus_one_and_a_base_rate_must_be_a_probability():
    assert score_1_99(np.array([np.nan, 0.0, 1.0]), 0.1).tolist() == [-1, 1, 99]
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        score_1_99(np.array([0.5]), 0.0)


@given(
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=50),
    st.floats(0.001, 0.999),
)
def test_a_score_of_70_or_more_never_comes_below_the_base_rate(probabilities, base):
    p = np.sort(np.asarray(probabilities))
    score = score_1_99(p, base)
    assert (p[score >= 70] > base).all()
    assert (p[score >= 51] > base).all() and (p[score <= 49] < base).all()
    assert (np.diff(score) >= 0).all()  # never lower for a higher probability


def test_probability_at_score_is_the_lowest_probability_of_that_score():
    for base in (0.02, 0.1, 0.385):
        for score in range(2, 99):
            at = probability_at_score(score, base)
            assert score_1_99(np.array([at * (1 + 1e-9), at * (1 - 1e-6)]), base).tolist() == [score, score - 1]


class Fitted:
    base_rate_ = 0.12


class Old:  # a model trained before the base rate was stored
    pass


def test_the_base_rate_comes_from_the_model_else_from_the_reasons_reference():
    assert base_rate_of(Fitted(), {"x": {"overall_rate": 0.3}}) == (0.12, "the model's base rate")
    rate, source = base_rate_of(Old(), {"x": {"typical": 1.0}, "tier": {"rates": {}, "overall_rate": 0.3}})
    assert rate == 0.3 and "older model" in source
    assert base_rate_of(Old(), {"x": {"typical": 1.0, "converting": 2.0}}) == (None, "none stored with the model")


def test_percentile_ties_share_the_highest_rank_and_follow_the_score():
    probability = np.array([0.5, 0.1, 0.1, 0.9])
    assert percentile_in_run(probability).tolist() == [75.0, 50.0, 50.0, 100.0]
    score = score_1_99(probability, 0.2)
    order = np.argsort(probability)
    assert (np.diff(score[order]) >= 0).all() and (np.diff(percentile_in_run(probability)[order]) >= 0).all()
