"""Baselines the model must beat: logistic regression on the same features, and the rules-only grade."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler


def _as_text(frame: pd.DataFrame) -> np.ndarray:
    return frame.astype("string").fillna("(missing)").to_numpy(dtype=object)


def logistic_regression(categorical: list[str], numeric: list[str], *, random_state: int = 0) -> Pipeline:
    """Standardised numbers (median-imputed, with missing indicators) and one-hot categories."""
    numbers = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True), StandardScaler()
    )
    categories = make_pipeline(
        FunctionTransformer(_as_text, feature_names_out="one-to-one"),
        OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20, sparse_output=False),
    )
    prepare = ColumnTransformer([("num", numbers, numeric), ("cat", categories, categorical)])
    return Pipeline(
        [("prepare", prepare), ("model", LogisticRegression(C=0.5, max_iter=2000, random_state=random_state))]
    )


class CellRateBaseline(ClassifierMixin, BaseEstimator):
    """Rules only: the probability of a lead is the training conversion rate of its grade cell (A1..D4)."""

    def __init__(self, *, prior_weight: float = 10.0) -> None:
        self.prior_weight = prior_weight

    def fit(self, X: pd.DataFrame, y) -> CellRateBaseline:
        y = pd.Series(np.asarray(y, float), index=X.index)
        self.classes_ = np.array([0, 1])
        self.overall_rate_ = float(y.mean())
        grouped = y.groupby(X["cell"].to_numpy())
        # shrink small cells towards the overall rate
        self.cell_rates_ = (
            (grouped.sum() + self.prior_weight * self.overall_rate_) / (grouped.size() + self.prior_weight)
        ).to_dict()
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = X["cell"].map(self.cell_rates_).fillna(self.overall_rate_).to_numpy(dtype=float)
        return np.column_stack([1 - p, p])
