"""The linear candidate: L2-regularised logistic regression on a proper design, calibrated and explained like the
trees (models.margin_model).

Each numeric feature becomes cubic B-splines (scikit-learn's SplineTransformer) with knots at its training quantiles
and linear extrapolation: beyond the training range the log-odds go on in a straight line, where trees stay flat at
the last value they saw (the bank's macro indicators run out of range in its last period, where logistic regression
keeps ranking and LightGBM does not). A missing value gives every basis function zero: with the basis summing to
one elsewhere, that is a missing-value indicator. Each categorical feature is one-hot encoded, levels seen fewer than
`rare_min_frequency` times grouped into one, and a level never seen (or missing) scores zero on every column.

Contributions are exact linear SHAP with the training design's mean as background (shap.LinearExplainer's
"interventional" values): per feature, the sum over its design columns of coef x (value - mean); the base value is
intercept + coef . mean. A row's contributions add up to its margin.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, SplineTransformer, StandardScaler

from leadscore.models.margin_model import MarginModel

MISSING = "(missing)"
NUMERIC = ("linear", "splines")


def one_blas_thread():
    """lbfgs's products are memory-bound: a second BLAS thread gains little on an idle machine and, spinning while
    the other is descheduled, loses much on a busy one (316k rows: 35 s with two threads, 20 s with one)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


class LinearConversionModel(MarginModel):
    """Regularised logistic regression (splines, grouped one-hot, missing indicators) with a calibrator on top."""

    family = "logistic"

    def __init__(
        self,
        *,
        categorical_features: tuple[str, ...] = (),
        C: float = 0.5,
        numeric: str = "linear",
        n_knots: int = 5,
        rare_min_frequency: int = 20,
        validation_fraction: float = 0.2,
        validation_gap_days: float = 0.0,
        calibration: str = "auto",
        refit: bool = True,
        min_positives: int = 40,
        min_negatives: int = 40,
        random_state: int = 0,
        recency: str = "none",
        recency_half_life: float = 0.25,
        recency_window: float = 0.5,
        negative_rate: float = 1.0,
    ) -> None:
        self.categorical_features = categorical_features
        self.C = C
        self.numeric = numeric
        self.n_knots = n_knots
        self.rare_min_frequency = rare_min_frequency
        self.validation_fraction = validation_fraction
        self.validation_gap_days = validation_gap_days
        self.calibration = calibration
        self.refit = refit
        self.min_positives = min_positives
        self.min_negatives = min_negatives
        self.random_state = random_state
        self.recency = recency
        self.recency_half_life = recency_half_life
        self.recency_window = recency_window
        self.negative_rate = negative_rate

    # -- the family's margin ----------------------------------------------------------------------------------
    def _fit_margin(self, data, y, weight, rows, valid) -> None:
        """Fit on `rows` and the early-stopping fold (nothing to stop early here; both precede calibration)."""
        rows = rows if valid is None else np.sort(np.concatenate([rows, valid]))
        fitted = data.iloc[rows]
        self.design_ = ColumnTransformer(self._encoders(fitted), sparse_threshold=0.0)
        design = self.design_.fit_transform(_as_design_input(fitted, self.categories_))
        self.logistic_ = LogisticRegression(C=self.C, max_iter=2000, random_state=self.random_state)
        with one_blas_thread():
            self.logistic_.fit(design, y[rows], sample_weight=weight[rows])
        self.design_mean_ = design.mean(axis=0)
        # which business feature each design column belongs to: contributions are summed back per feature
        self.design_owner_ = np.full(design.shape[1], -1)
        for name, block in self.design_.output_indices_.items():
            if name != "remainder":
                self.design_owner_[block] = int(name[1:])

    def _encoders(self, fitted: pd.DataFrame) -> list[tuple]:
        """One encoder per feature, named f<position>; a numeric feature with a single value carries nothing."""
        encoders = []
        for i, column in enumerate(fitted.columns):
            if column in self.categories_:
                onehot = OneHotEncoder(
                    handle_unknown="infrequent_if_exist", min_frequency=self.rare_min_frequency, sparse_output=False
                )
                encoders.append((f"f{i}", onehot, [column]))
                continue
            encoder = self._numeric_encoder(fitted[column].to_numpy(dtype="float64"))
            if encoder is not None:
                encoders.append((f"f{i}", encoder, [column]))
        return encoders

    def _numeric_encoder(self, values: np.ndarray):
        """`linear`: the standardised value (median-imputed) and a missing indicator; `splines`: B-splines."""
        if self.numeric not in NUMERIC:
            raise ValueError(f"unknown numeric encoding {self.numeric!r}: use one of {list(NUMERIC)}")
        knots = _quantile_knots(values, self.n_knots)
        if knots is None:
            return None
        if self.numeric == "splines":
            return SplineTransformer(
                knots=knots.reshape(-1, 1), degree=3, extrapolation="linear", handle_missing="zeros"
            )
        impute = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
        return make_pipeline(impute, StandardScaler())

    def _design(self, data: pd.DataFrame) -> np.ndarray:
        return self.design_.transform(_as_design_input(data, self.categories_))

    def _margin(self, data: pd.DataFrame) -> np.ndarray:
        return self.logistic_.decision_function(self._design(data))

    def _contributions(self, data: pd.DataFrame) -> np.ndarray:
        """Exact linear SHAP per feature, then the base value (see the module's docstring)."""
        coef = self.logistic_.coef_[0]
        terms = (self._design(data) - self.design_mean_) * coef
        out = np.zeros((len(data), self.n_features_in_ + 1))
        for position in np.unique(self.design_owner_[self.design_owner_ >= 0]):
            out[:, position] = terms[:, self.design_owner_ == position].sum(axis=1)
        out[:, -1] = float(self.logistic_.intercept_[0] + self.design_mean_ @ coef)
        return out

    def describe(self) -> str:
        columns = len(self.logistic_.coef_[0])
        return f"logistic regression, {columns} design columns (C={self.C:g}), calibration: {self.calibration_method_}"


def _as_design_input(data: pd.DataFrame, categories: dict) -> pd.DataFrame:
    """Categories as text with missing (and never seen, which `_prepare` made missing) as one level; numbers as
    they are (the splines read NaN as missing)."""
    out = {}
    for column in data.columns:
        if column in categories:
            out[column] = data[column].astype(object).where(data[column].notna(), MISSING).astype(str).to_numpy()
        else:
            out[column] = data[column].to_numpy(dtype="float64")
    return pd.DataFrame(out, index=data.index)


def _quantile_knots(values: np.ndarray, n_knots: int) -> np.ndarray | None:
    """Knots at the quantiles of the observed values, duplicates merged (counts and flags have few distinct values);
    None when the feature takes one value only."""
    observed = values[~np.isnan(values)]
    if len(observed) == 0:
        return None
    knots = np.unique(np.quantile(observed, np.linspace(0, 1, n_knots)))
    return knots if len(knots) >= 2 else None
