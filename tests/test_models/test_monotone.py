"""Declared business directions: the factory turns them into monotone constraints the model keeps."""

import numpy as np
import pandas as pd
import pytest

from leadscore.features.registry import FeatureSpec, all_features, declared_directions
from leadscore.models.conversion import ConversionModel
from leadscore.models.factory import ModelSettings, build_model


def bumpy(n: int = 4000, seed: int = 1) -> tuple[pd.DataFrame, pd.Series]:
    """Conversion rises with `visits` up to 6, then falls: a shape the trees follow unless constrained."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "visits": rng.integers(0, 13, n).astype(float),
            "noise": rng.normal(size=n),
            "industry": rng.choice(["software", "retail"], n),
        }
    )
    logit = -2 + 0.8 * np.minimum(X["visits"], 6) - 0.6 * np.maximum(X["visits"] - 6, 0)
    return X, pd.Series((rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int))


def probability_along_visits(model: ConversionModel, X: pd.DataFrame) -> np.ndarray:
    """One lead scored while its `visits` moves from 0 to 12, everything else fixed."""
    lead = X.iloc[[0]]
    grid = pd.concat([lead.assign(visits=float(v)) for v in range(13)], ignore_index=True)
    return model.predict_proba(grid)[:, 1]


def fit(X, y, **kwargs) -> ConversionModel:
    model = ConversionModel(
        categorical_features=("industry",),
        n_estimators=200,
        min_child_samples=20,
        early_stopping_rounds=20,
        random_state=0,
        **kwargs,
    )
    return model.fit(X, y)


def test_a_constrained_feature_never_lowers_the_probability_as_it_grows():
    X, y = bumpy()
    free = probability_along_visits(fit(X, y), X)
    assert (np.diff(free) < -1e-6).any()  # unconstrained, the model learns the fall after 6 visits
    constrained = fit(X, y, monotone_constraints={"visits": 1})
    assert (np.diff(probability_along_visits(constrained, X)) >= -1e-12).all()
    decreasing = fit(X, y, monotone_constraints={"visits": -1})
    assert (np.diff(probability_along_visits(decreasing, X)) <= 1e-12).all()


def test_a_direction_on_a_categorical_or_absent_column_is_ignored():
    X, y = bumpy(n=1500)
    model = fit(X, y, monotone_constraints={"industry": 1, "not_a_column": -1})
    assert model.predict_proba(X.head(3)).shape == (3, 2)


def test_the_factory_uses_the_registry_directions_unless_switched_off():
    directions = declared_directions()
    assert directions["events_pricing_page_view_count_30d"] == 1
    assert directions["events_days_since_last"] == -1
    assert "lead_seniority" not in directions and "lead_age_days" not in directions
    on = build_model(ModelSettings(), categorical_features=[], gap_days=0)
    assert on.monotone_constraints == directions
    assert build_model(ModelSettings(monotone=False), categorical_features=[], gap_days=0).monotone_constraints is None
    flat = build_model(ModelSettings(), categorical_features=[], gap_days=0, directions={"TotalVisits": 1})
    assert flat.monotone_constraints == {"TotalVisits": 1}


def test_every_declared_direction_is_on_a_numeric_feature_and_concepts_group_windows():
    specs = all_features()
    assert all(specs[n].kind != "categorical" for n in declared_directions())
    windows = [n for n, s in specs.items() if s.concept == "events_page_view"]
    assert sorted(windows) == [f"events_page_view_count_{d}d" for d in (30, 7, 90)]
    with pytest.raises(ValueError, match="categorical feature has no direction"):
        FeatureSpec("x", "demographic", "x", "categorical", "", len, direction=1)
