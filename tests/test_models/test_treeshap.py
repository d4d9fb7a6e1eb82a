"""Fast exact TreeSHAP (models.treeshap) against its reference, LightGBM's pred_contrib: hand-computed tables,
every kind of split LightGBM makes, the sample-data model, and random small models."""

import logging

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.models import treeshap
from leadscore.models.treeshap import UnsupportedModelError, booster_contributions, leaf_tables, shap_tables

TOLERANCE = 1e-9  # the issue asks 1e-5 in log-odds; the two algorithms agree to rounding


def reference(booster: lgb.Booster, data: pd.DataFrame, num_iteration: int | None = None) -> np.ndarray:
    return booster.predict(data, pred_contrib=True, num_iteration=num_iteration)


def params(**extra) -> dict:
    return {"objective": "binary", "verbosity": -1, "num_threads": 1, "deterministic": True, "seed": 0} | extra


def mixed_frame(n: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Numbers with NaN and exact zeros, a 40-level category (bitsets over two words) with missing values."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "visits": np.where(rng.random(n) < 0.15, np.nan, rng.poisson(3, n).astype(float)),
            "size": np.where(rng.random(n) < 0.3, 0.0, rng.lognormal(3, 1, n)),
            "industry": pd.Categorical(
                np.where(rng.random(n) < 0.1, None, rng.integers(0, 40, n).astype(str)).astype(object)
            ),
            "score": rng.normal(size=n),
        }
    )
    codes = X["industry"].cat.codes.to_numpy()
    logit = 0.4 * np.nan_to_num(X["visits"].to_numpy()) - 0.02 * X["size"] + (codes % 3 == 0) + X["score"] - 1
    return X, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


def test_one_feature_leaf_table_by_hand():
    # v = 2, z = 0.25: a row that fails the split gets v * (0 - z), one that passes v * (1 - z)
    np.testing.assert_allclose(leaf_tables(np.array([[0.25]]), np.array([2.0]))[0], [[-0.5], [1.5]])


def test_two_feature_leaf_table_by_hand():
    # z = (0.5, 0.25), v = 1; weights 1/2 for S empty and S = {other}
    table = leaf_tables(np.array([[0.5, 0.25]]), np.array([1.0]))[0]
    expected = [
        [(0 - 0.5) * 0.5 * 0.25, (0 - 0.25) * 0.5 * 0.5],  # satisfies neither
        [(1 - 0.5) * 0.5 * 0.25, (0 - 0.25) * (0.5 * 0.5 + 0.5)],  # only feature 0
        [(0 - 0.5) * (0.5 * 0.25 + 0.5), (1 - 0.25) * 0.5 * 0.5],  # only feature 1
        [(1 - 0.5) * (0.5 * 0.25 + 0.5), (1 - 0.25) * (0.5 * 0.5 + 0.5)],  # both
    ]
    np.testing.assert_allclose(table, expected)
    # efficiency: a row satisfying everything gets v - v * prod(z) in total
    assert table[3].sum() == pytest.approx(1 - 0.5 * 0.25)


def test_categorical_splits_nan_zero_and_unseen_categories_match_pred_contrib():
    X, y = mixed_frame()
    booster = lgb.train(
        params(num_leaves=15, max_depth=6, min_data_per_group=5, cat_smooth=1),
        lgb.Dataset(X, y, categorical_feature=["industry"]),
        num_boost_round=40,
    )
    kinds = {node["decision_type"] for tree in booster.dump_model()["tree_info"] for node in _nodes(tree)}
    assert kinds == {"<=", "=="}, "the model must use categorical splits for this test to mean anything"
    unseen = X.head(20).assign(industry=pd.Categorical([None] * 20, categories=X["industry"].cat.categories))
    for data in (X, unseen):
        np.testing.assert_allclose(booster_contributions(booster, data), reference(booster, data), atol=TOLERANCE)


@pytest.mark.parametrize("extra", [{"zero_as_missing": True}, {"use_missing": False}, {"max_depth": -1}])
def test_missing_value_rules_and_unlimited_depth_match_pred_contrib(extra):
    X, y = mixed_frame(1500, seed=1)
    booster = lgb.train(
        params(num_leaves=31, min_data_per_group=5, **extra),
        lgb.Dataset(X, y, categorical_feature=["industry"]),
        num_boost_round=20,
    )
    np.testing.assert_allclose(booster_contributions(booster, X), reference(booster, X), atol=TOLERANCE)


def test_values_exactly_at_and_next_to_every_threshold_go_where_lightgbm_sends_them():
    X, y = mixed_frame(2000, seed=2)
    numeric = X.drop(columns="industry")
    booster = lgb.train(params(num_leaves=15), lgb.Dataset(numeric, y), num_boost_round=15)
    thresholds = {}
    for tree in booster.dump_model()["tree_info"]:
        for node in _nodes(tree):
            thresholds.setdefault(node["split_feature"], []).append(node["threshold"])
    rows = []
    for feature, values in thresholds.items():
        for value in values:
            for probe in (value, np.nextafter(value, -np.inf), np.nextafter(value, np.inf), 0.0, -0.0, 1e-36):
                row = numeric.iloc[len(rows) % len(numeric)].copy()
                row.iloc[feature] = probe
                rows.append(row)
    probes = pd.DataFrame(rows).reset_index(drop=True)
    np.testing.assert_allclose(booster_contributions(booster, probes), reference(booster, probes), atol=TOLERANCE)


def test_monotone_constraints_and_num_iteration_match_pred_contrib():
    X, y = mixed_frame(2000, seed=3)
    booster = lgb.train(
        params(
            num_leaves=15,
            monotone_constraints=[1, -1, 0, 1],
            monotone_constraints_method="intermediate",
            min_data_per_group=5,
        ),
        lgb.Dataset(X, y, categorical_feature=["industry"]),
        num_boost_round=30,
    )
    for iterations in (7, 30):
        np.testing.assert_allclose(
            booster_contributions(booster, X, num_iteration=iterations),
            reference(booster, X, num_iteration=iterations),
            atol=TOLERANCE,
        )


def test_a_single_leaf_model_is_its_constant():
    X, y = mixed_frame(200)
    booster = lgb.train(params(min_data_in_leaf=1000), lgb.Dataset(X, y, categorical_feature=["industry"]), 5)
    tables = shap_tables(booster)
    assert tables.n_leaves == 0 and tables.n_trees == 1
    ours = booster_contributions(booster, X)
    np.testing.assert_allclose(ours, reference(booster, X), atol=TOLERANCE)
    assert np.all(ours[:, :-1] == 0)


def test_threads_split_the_rows_without_changing_a_value():
    X, y = mixed_frame(2000, seed=4)
    booster = lgb.train(params(num_leaves=15), lgb.Dataset(X, y, categorical_feature=["industry"]), 10)
    one = booster_contributions(booster, X, n_threads=1)
    np.testing.assert_array_equal(booster_contributions(booster, X, n_threads=3), one)


@pytest.mark.parametrize("limit", [{"MAX_TABLE_VALUES": 10}, {"MAX_PATH_FEATURES": 1}])
def test_models_too_deep_for_tables_fall_back_to_pred_contrib_and_say_so(monkeypatch, caplog, limit):
    X, y = mixed_frame(1000, seed=5)
    booster = lgb.train(params(num_leaves=7), lgb.Dataset(X, y, categorical_feature=["industry"]), 5)
    for name, value in limit.items():
        monkeypatch.setattr(treeshap, name, value)
    with pytest.raises(UnsupportedModelError, match="too deep"):
        shap_tables(booster)
    with caplog.at_level(logging.WARNING, logger="leadscore.models.treeshap"):
        values = booster_contributions(booster, X)
    assert "pred_contrib" in caplog.text
    np.testing.assert_array_equal(values, reference(booster, X))


def test_linear_trees_are_refused_as_lightgbm_refuses_them():
    X, y = mixed_frame(1000, seed=5)
    numeric = X[["visits", "score"]]
    booster = lgb.train(params(linear_tree=True, num_leaves=4), lgb.Dataset(numeric, y), num_boost_round=5)
    with pytest.raises(UnsupportedModelError, match="linear"):
        shap_tables(booster)
    with pytest.raises(lgb.basic.LightGBMError, match="linear trees"):  # pred_contrib has no SHAP for them either
        booster_contributions(booster, numeric)


def test_multiclass_models_are_refused():
    X, _ = mixed_frame(600, seed=6)
    y = np.arange(len(X)) % 3
    booster = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbosity": -1},
        lgb.Dataset(X[["visits", "score"]], y),
        num_boost_round=2,
    )
    with pytest.raises(UnsupportedModelError, match="per iteration"):
        shap_tables(booster)


def test_the_sample_data_champion_matches_pred_contrib(trained_project):
    from leadscore.pipelines.config import load_settings
    from leadscore.pipelines.verbs.scoring import champion_open_matrix

    model, X = champion_open_matrix(load_settings(trained_project))
    ours = model.contributions(X)
    expected = model.booster_.predict(model._prepare(X), pred_contrib=True, num_iteration=model.best_iteration_)
    assert len(X) > 500 and ours.columns[-1] == "base_value"
    np.testing.assert_allclose(ours.to_numpy(), expected, atol=TOLERANCE)
    np.testing.assert_allclose(ours.sum(axis=1), model.raw_score(X), atol=1e-9)


@st.composite
def small_problems(draw):
    n = draw(st.integers(40, 300))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    columns = {}
    for i in range(draw(st.integers(1, 4))):
        values = rng.choice(draw(st.sampled_from([[0.0, 1.0, 2.0], [-1.5, 0.0, 0.5, 3.0, 7.0]])), n)
        values = values + rng.normal(size=n) * draw(st.sampled_from([0.0, 1.0]))  # ties or none
        values[rng.random(n) < draw(st.sampled_from([0.0, 0.2]))] = np.nan
        columns[f"x{i}"] = values
    categorical = draw(st.booleans())
    if categorical:
        levels = draw(st.integers(2, 12))
        codes = rng.integers(-1, levels, n)  # -1: missing
        columns["c"] = pd.Categorical.from_codes(codes, categories=[f"v{j}" for j in range(levels)])
    X = pd.DataFrame(columns)
    y = (rng.random(n) < 0.5).astype(int)
    model_params = params(
        num_leaves=draw(st.integers(2, 12)),
        max_depth=draw(st.sampled_from([-1, 2, 4])),
        min_data_in_leaf=draw(st.integers(1, 10)),
        min_data_per_group=1,
        cat_smooth=1,
        zero_as_missing=draw(st.booleans()),
        learning_rate=0.3,
    )
    rounds = draw(st.integers(1, 8))
    return X, y, model_params, rounds, ["c"] if categorical else []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_problems())
def test_random_small_models_match_pred_contrib(problem):
    X, y, model_params, rounds, categorical = problem
    booster = lgb.train(model_params, lgb.Dataset(X, y, categorical_feature=categorical), num_boost_round=rounds)
    np.testing.assert_allclose(booster_contributions(booster, X), reference(booster, X), atol=TOLERANCE)


def test_no_rows_give_no_rows():
    X, y = mixed_frame(500, seed=8)
    booster = lgb.train(params(num_leaves=7), lgb.Dataset(X, y, categorical_feature=["industry"]), 5)
    assert booster_contributions(booster, X.head(0), n_threads=2).shape == (0, X.shape[1] + 1)


def test_tables_are_built_once_per_booster():
    X, y = mixed_frame(500, seed=7)
    booster = lgb.train(params(num_leaves=7), lgb.Dataset(X, y, categorical_feature=["industry"]), 5)
    assert treeshap.cached_tables(booster) is treeshap.cached_tables(booster)


def _nodes(tree: dict):
    stack = [tree["tree_structure"]]
    while stack:
        node = stack.pop()
        if "split_index" in node:
            yield node
            stack += [node["left_child"], node["right_child"]]
