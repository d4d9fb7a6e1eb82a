"""Choosing the recipe on rolling-origin folds: the folds, and the family each kind of data calls for."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.models.choice import choose, rolling_origin_folds
from leadscore.models.factory import ModelSettings, candidate_recipes
from leadscore.models.margin_model import recency_weights


def test_rolling_origin_folds_on_row_order_are_the_last_blocks_each_trained_on_all_before():
    folds = rolling_origin_folds(10, k=3, fold_fraction=0.2)
    assert [(list(train), list(test)) for train, test in folds] == [
        ([0, 1, 2, 3], [4, 5]),
        ([0, 1, 2, 3, 4, 5], [6, 7]),
        ([0, 1, 2, 3, 4, 5, 6, 7], [8, 9]),
    ]


def test_rolling_origin_folds_leave_a_gap_of_one_horizon_and_keep_a_timestamp_on_one_side():
    days = pd.Series(pd.to_datetime(["2024-01-01"] * 4 + ["2024-01-05", "2024-01-05", "2024-01-09", "2024-01-10"]))
    no_gap = rolling_origin_folds(8, k=2, fold_fraction=0.25, sample_time=days)
    # the first test block starts on 01-05 and holds both rows of that day
    assert [(list(train), list(test)) for train, test in no_gap] == [
        ([0, 1, 2, 3], [4, 5]),
        ([0, 1, 2, 3, 4, 5], [6, 7]),
    ]
    gap = rolling_origin_folds(8, k=2, fold_fraction=0.25, sample_time=days, gap_days=4)
    # with a 4-day gap the 01-05 rows are too close to the 01-09 block, and nothing precedes 01-05 by more than 4 days
    assert [(list(train), list(test)) for train, test in gap] == [([0, 1, 2, 3], [6, 7])]


@settings(max_examples=60, deadline=None)
@given(
    days=st.lists(st.integers(0, 30), min_size=5, max_size=60),
    k=st.integers(1, 4),
    fraction=st.floats(0.05, 0.3),
    gap=st.integers(0, 5),
)
def test_rolling_origin_folds_are_disjoint_and_time_ordered(days, k, fraction, gap):
    times = pd.Series(pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(days, unit="D"))
    folds = rolling_origin_folds(len(days), k=k, fold_fraction=fraction, sample_time=times, gap_days=gap)
    tests = [set(test) for _, test in folds]
    assert sum(len(t) for t in tests) == len(set().union(*tests))  # test blocks never overlap
    for train, test in folds:
        assert times.iloc[train].max() < times.iloc[test].min() - pd.Timedelta(days=gap)
    starts = [times.iloc[test].min() for _, test in folds]
    assert starts == sorted(starts)


def test_recency_weights_halve_every_half_life_and_a_window_keeps_the_latest_rows():
    class Recipe:
        recency, recency_half_life, recency_window = "half_life", 0.5, 0.5

    np.testing.assert_allclose(recency_weights(5, Recipe()), [0.25, 2**-1.5, 0.5, 2**-0.5, 1.0])
    Recipe.recency = "window"
    np.testing.assert_array_equal(recency_weights(5, Recipe()), [0, 0, 1, 1, 1])


def _candidates():
    small = ModelSettings(n_estimators=150, min_child_samples=20, calibration="sigmoid", monotone=False)
    return candidate_recipes(small, categorical_features=[], gap_days=0.0, directions={})


def _choose(X, y):
    folds = rolling_origin_folds(len(X), k=3, fold_fraction=0.1)
    return choose(_candidates(), X, pd.Series(y), folds=folds)


def test_on_a_feature_trending_out_of_its_training_range_the_linear_candidate_is_chosen():
    rng = np.random.default_rng(0)
    n = 3000
    trend = np.linspace(0, 30, n)  # each fold's values lie beyond anything the rows before it saw
    noise = rng.normal(size=n)
    X = pd.DataFrame({"x": trend + noise, "other": rng.normal(size=n)})
    y = rng.random(n) < 1 / (1 + np.exp(-2 * noise))  # conversion follows x around its trend
    choice = _choose(X, y)
    assert choice.chosen == "logistic", choice.reason
    assert choice.reason.startswith("logistic chosen: roc_auc")


def test_on_an_interaction_the_tree_candidate_is_chosen():
    rng = np.random.default_rng(1)
    n = 3000
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    y = ((X["a"] > 0) ^ (X["b"] > 0)).to_numpy() ^ (rng.random(n) < 0.1)  # either alone says nothing
    choice = _choose(X, y)
    assert choice.chosen == "lightgbm", choice.reason
    assert choice.weighted["lightgbm"] > 0.8 > 0.6 > choice.weighted["logistic"]
