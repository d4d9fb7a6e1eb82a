"""The conversion model: scikit-learn's contract, time-ordered folds, calibration, dtype restoration, SHAP sums."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import brier_score_loss
from sklearn.utils.estimator_checks import check_estimator

from leadscore.models.conversion import ConversionModel, TooLittleDataError, time_ordered_split


def synthetic(n: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "visits": rng.poisson(3, n).astype(float),
            "size": rng.lognormal(4, 1, n),
            "industry": rng.choice(["software", "retail", "education"], n),
        }
    )
    logit = -2 + 0.5 * X["visits"] + X["industry"].map({"software": 1.0, "retail": 0.0, "education": -1.0})
    y = pd.Series((rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int))
    X.loc[rng.random(n) < 0.1, "visits"] = np.nan
    times = pd.Series(pd.date_range("2024-01-01", periods=n, freq="2h", tz="UTC"))
    return X, y, times


def small_model(**kwargs) -> ConversionModel:
    return ConversionModel(n_estimators=60, min_positives=5, min_negatives=5, early_stopping_rounds=10, **kwargs)


def test_scikit_learn_estimator_contract():
    # numeric-only data is what the generic checks can generate; categoricals are covered below
    model = ConversionModel(
        n_estimators=60, min_positives=1, min_negatives=1, early_stopping_rounds=10, min_child_samples=2
    )
    check_estimator(
        model,
        expected_failed_checks={
            "check_dtype_object": "by design, text numbers (from CSV) are parsed rather than refused",
            "check_sample_weight_equivalence_on_dense_data": "repeated rows shift the time-ordered folds",
        },
    )


def test_time_ordered_split_never_puts_a_later_cutoff_in_train():
    times = pd.Series(pd.to_datetime(["2025-01-10", "2025-01-01", "2025-03-01", "2025-02-01", "2025-04-01"], utc=True))
    earlier, later = time_ordered_split(5, fraction=0.4, sample_time=times, gap_days=30)
    assert sorted(later) == [2, 4]  # March and April
    assert sorted(earlier) == [0, 1]  # February falls in the 30-day gap before March
    assert times.iloc[earlier].max() + pd.Timedelta(days=30) <= times.iloc[later].min()


def test_rows_of_one_timestamp_never_land_on_both_sides():
    # the boundary timestamp (March) holds three rows: all go to the later fold, none to the earlier one
    times = pd.Series(
        pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01", "2025-03-01", "2025-03-01", "2025-04-01"], utc=True)
    )
    earlier, later = time_ordered_split(6, fraction=0.4, sample_time=times)
    assert earlier.tolist() == [0, 1] and later.tolist() == [2, 3, 4, 5]
    assert not set(earlier) & set(later)


def test_a_split_that_cannot_be_made_says_why():
    times = pd.Series(pd.to_datetime(["2025-03-01"] * 5, utc=True))
    with pytest.raises(TooLittleDataError, match="rows of one timestamp never go to both sides"):
        time_ordered_split(5, fraction=0.2, sample_time=times)


def test_trees_early_stopping_and_calibration_folds_are_disjoint_and_in_time_order():
    n = 1000
    times = pd.Series(pd.date_range("2024-01-01", periods=n // 4, freq="D", tz="UTC").repeat(4))  # ties of 4
    model = small_model(validation_gap_days=10)
    train, stopping, calibration = model._folds(n, times)
    assert len(stopping) and len(calibration)
    assert times.iloc[train].max() + pd.Timedelta(days=10) < times.iloc[stopping].min()
    assert times.iloc[stopping].max() < times.iloc[calibration].min()
    assert len(set(train) | set(stopping) | set(calibration)) == len(train) + len(stopping) + len(calibration)
    assert len(stopping) + len(calibration) == 200
    X, y, _ = synthetic(n)
    fitted = small_model(validation_gap_days=10, categorical_features=("industry",)).fit(X, y, sample_time=times)
    assert (fitted.n_valid_, fitted.n_calibration_) == (len(stopping), len(calibration))


def test_sample_weights_change_the_fit_and_are_checked():
    X, y, times = synthetic()
    plain = small_model(categorical_features=("industry",)).fit(X, y, sample_time=times)
    weights = np.where(X["industry"] == "software", 5.0, 1.0)
    weighted = small_model(categorical_features=("industry",)).fit(X, y, sample_time=times, sample_weight=weights)
    assert not np.allclose(plain.raw_score(X.head(50)), weighted.raw_score(X.head(50)))
    # only relative weights matter: scaling them all gives the same model
    scaled = small_model(categorical_features=("industry",)).fit(X, y, sample_time=times, sample_weight=weights * 7)
    np.testing.assert_allclose(scaled.predict_proba(X.head(50)), weighted.predict_proba(X.head(50)), atol=1e-9)
    with pytest.raises(ValueError, match="sample_weight"):
        small_model().fit(X, y, sample_weight=-np.ones(len(y)))


def test_fit_predicts_calibrated_probabilities_and_keeps_brier():
    X, y, times = synthetic()
    model = small_model(categorical_features=("industry",), validation_gap_days=1).fit(
        X[:2400], y[:2400], sample_time=times[:2400]
    )
    assert model.calibration_method_ in {"sigmoid", "isotonic"}
    p = model.predict_proba(X[2400:])[:, 1]
    raw = 1 / (1 + np.exp(-model.raw_score(X[2400:])))
    assert brier_score_loss(y[2400:], p) <= brier_score_loss(y[2400:], raw) + 0.002
    assert model.get_feature_names_out().tolist() == ["visits", "size", "industry"]
    assert model.categories_["industry"] == ["education", "retail", "software"]


def test_refit_trains_on_the_validation_fold_too_with_the_early_stopped_tree_count():
    X, y, times = synthetic()
    kept = small_model(refit=False, categorical_features=("industry",)).fit(X[:2000], y[:2000])
    refit = small_model(refit=True, categorical_features=("industry",)).fit(X[:2000], y[:2000])

    def rows_seen(model: ConversionModel) -> int:  # LightGBM records the rows under each tree's root
        return model.booster_.dump_model()["tree_info"][0]["tree_structure"]["internal_count"]

    assert (kept.n_train_, rows_seen(kept)) == (1600, 1600)
    assert (refit.n_train_, rows_seen(refit)) == (2000, 2000)
    assert refit.booster_.num_trees() == refit.best_iteration_ == kept.best_iteration_
    assert refit.calibration_method_ == kept.calibration_method_
    assert not np.allclose(refit.raw_score(X[2000:]), kept.raw_score(X[2000:]))


# unseen categories must go through a path pandas 4 still accepts, not one it merely deprecates today
@pytest.mark.filterwarnings("error::pandas.errors.Pandas4Warning")
def test_plain_strings_from_csv_and_unseen_categories_score_the_same_way(tmp_path):
    X, y, _ = synthetic()
    model = small_model(categorical_features=("industry",)).fit(X, y)
    path = tmp_path / "x.csv"
    X.to_csv(path, index=False)
    as_text = pd.read_csv(path, dtype=str)
    np.testing.assert_allclose(model.predict_proba(as_text), model.predict_proba(X))
    unseen = X.head(3).assign(industry=["aerospace", None, "software"])
    p = model.predict_proba(unseen)[:, 1]
    missing = model.predict_proba(X.head(3).assign(industry=[None, None, "software"]))[:, 1]
    np.testing.assert_allclose(p, missing)  # a new category is scored like a missing one


def test_contributions_plus_base_value_equal_the_raw_score():
    X, y, _ = synthetic()
    model = small_model(categorical_features=("industry",)).fit(X, y)
    contributions = model.contributions(X.head(200))
    np.testing.assert_allclose(contributions.sum(axis=1), model.raw_score(X.head(200)), atol=1e-9)
    import shap

    explainer_values = shap.TreeExplainer(model.booster_).shap_values(model._prepare(X.head(50)))
    np.testing.assert_allclose(
        contributions.drop(columns="base_value").head(50).to_numpy(), explainer_values, atol=1e-9
    )


def test_too_little_data_says_how_many_and_what_to_do():
    X, y, _ = synthetic(200)
    y[:] = 0
    y[:12] = 1
    with pytest.raises(
        TooLittleDataError,
        match=r"found 12 converted and 188 not-converted examples; need at least "
        r"40 and 40\. Add history",
    ):
        ConversionModel().fit(X, y)


def test_clone_and_refit_give_the_same_model():
    X, y, _ = synthetic()
    a = small_model(categorical_features=("industry",)).fit(X, y)
    b = clone(a).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_isotonic_calibration_never_says_certain():
    from leadscore.models.conversion import _apply, _fit_calibrator

    # the lowest margins all lost and the highest all converted: plain isotonic steps would be exactly 0 and 1
    margin = np.linspace(-3, 3, 400)
    y = (margin > 0).astype(int)
    calibrator = _fit_calibrator("isotonic", margin, y)
    # one pretend conversion / loss in each end step of 201 rows
    np.testing.assert_allclose(_apply(calibrator, calibrator.knots_), [1 / 201, 200 / 201])
    p = _apply(calibrator, np.array([-6.0, -3.0, 3.0, 6.0]))
    assert np.all(np.diff(p) > 0) and p[0] > 0 and p[-1] < 1


def test_probability_of_margin_is_predict_proba_from_the_raw_score_or_the_shap_sum():
    X, y, times = synthetic()
    model = small_model(categorical_features=("industry",)).fit(X[:2000], y[:2000], sample_time=times[:2000])
    rows = X[2000:2200]
    expected = model.predict_proba(rows)[:, 1]
    np.testing.assert_array_equal(model.probability_of_margin(model.raw_score(rows)), expected)
    np.testing.assert_allclose(model.probability_of_margin(model.contributions(rows).sum(axis=1)), expected, atol=1e-12)


def rare_conversions(n: int = 12000, seed: int = 5) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """About one conversion in ten, as in a CRM: the not-converted rows are the ones worth sampling."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"visits": rng.poisson(3, n).astype(float), "size": rng.lognormal(4, 1, n)})
    y = pd.Series((rng.random(n) < 1 / (1 + np.exp(-(-3.2 + 0.4 * X["visits"])))).astype(int))
    return X, y, pd.Series(pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"))


@pytest.mark.parametrize("calibration", ["none", "auto"])
def test_negative_sampling_with_weights_keeps_the_mean_probability_of_held_out_rows(calibration):
    X, y, times = rare_conversions()
    fit, held_out = slice(0, 10000), slice(10000, None)

    def fitted(rate: float, seed: int = 0) -> ConversionModel:
        model = small_model(calibration=calibration, negative_rate=rate, random_state=seed)
        return model.fit(X[fit], y[fit], sample_time=times[fit])

    full, sampled = fitted(1.0), fitted(0.25)
    assert sampled.n_train_ < 0.4 * full.n_train_  # a quarter of the not-converted rows, every converted one
    assert sampled.base_rate_ == full.base_rate_  # the rows as they come, not as sampled
    p_full, p_sampled = (m.predict_proba(X[held_out])[:, 1].mean() for m in (full, sampled))
    # without the 1 / rate weights the uncalibrated odds would be about 4x: mean probability ~0.3, not ~0.1
    assert p_sampled == pytest.approx(p_full, abs=0.006)
    again = fitted(0.25)
    np.testing.assert_array_equal(again.predict_proba(X[held_out]), sampled.predict_proba(X[held_out]))
    assert not np.array_equal(fitted(0.25, seed=1).raw_score(X[held_out]), sampled.raw_score(X[held_out]))
