"""The linear candidate: exact linear SHAP contributions that add up to its margin, calibrated like the trees."""

import numpy as np
import pandas as pd
import pytest
import shap

from leadscore.models.linear import LinearConversionModel


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(3)
    n = 1200
    x = rng.normal(size=n)
    x[::17] = np.nan  # missing values get their own indicator
    level = rng.choice(["a", "b", "c", "rare"], size=n, p=[0.45, 0.3, 0.24, 0.01])
    logit = np.nan_to_num(x) + (level == "a") - 0.5 * np.isnan(x)
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame({"x": x, "level": level, "flag": np.ones(n)}), y


@pytest.mark.parametrize("numeric", ["linear", "splines"])
def test_contributions_add_up_to_the_margin_and_match_shap_linear_explainer(frame, numeric):
    X, y = frame
    model = LinearConversionModel(categorical_features=("level",), numeric=numeric, calibration="sigmoid").fit(X, y)
    rows = pd.concat([X.head(30), pd.DataFrame({"x": [50.0, np.nan], "level": ["never seen", None], "flag": [1, 1]})])
    contributions = model.contributions(rows)
    np.testing.assert_allclose(contributions.sum(axis=1), model.margin(rows), atol=1e-10)
    assert (contributions["flag"] == 0).all()  # a feature with one value in training says nothing
    design = model._design(model._prepare(X))
    background = shap.maskers.Independent(design, max_samples=len(design))  # every training row, not a sample
    explainer = shap.LinearExplainer((model.logistic_.coef_[0], model.logistic_.intercept_[0]), background)
    per_column = explainer.shap_values(model._design(model._prepare(rows)))
    for position, name in enumerate(model.feature_names_in_):
        expected = per_column[:, model.design_owner_ == position].sum(axis=1)
        np.testing.assert_allclose(contributions[name], expected, atol=1e-10)


def test_the_linear_model_extrapolates_beyond_its_training_range(frame):
    X, y = frame
    model = LinearConversionModel(categorical_features=("level",), calibration="sigmoid").fit(X, y)
    far = pd.DataFrame({"x": [3.0, 6.0, 9.0], "level": ["b"] * 3, "flag": [1.0] * 3})  # training x tops out near 3.5
    p = model.predict_proba(far)[:, 1]
    assert p[0] < p[1] < p[2]


def test_probability_of_the_contributions_is_predict_proba(frame):
    X, y = frame
    model = LinearConversionModel(categorical_features=("level",)).fit(X, y)
    margin = model.contributions(X.head(20)).sum(axis=1).to_numpy()
    np.testing.assert_allclose(model.probability_of_margin(margin), model.predict_proba(X.head(20))[:, 1])
    assert model.family == "logistic" and model.describe().startswith("logistic regression")
