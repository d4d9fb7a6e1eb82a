"""The conversion model: LightGBM with native categoricals, early stopping on a time-ordered fold, and probability
calibration on a later, disjoint fold. One scikit-learn estimator from raw columns to probability.

Rows passed to `fit` must be in time order (or come with `sample_time`). Three time-ordered folds, never sharing a
timestamp: the earliest rows fit the trees; the last `validation_fraction` of rows, after a gap of
`validation_gap_days` (one label horizon, so no training label was still unknown when those rows were scored), is
split in two by time: the earlier half chooses the number of trees (early stopping), the later half fits the
calibrator on the out-of-sample margins of those trees. The calibrator never learns from the rows that chose the
trees, nor from the rows that fitted them.

With `refit=True` (the default) the booster is then refit on every row, both folds included, with the number of
trees early stopping chose: under drift the most recent outcomes matter most (bank marketing, trained once on the
first 80 %: holdout ROC AUC 0.575 without the refit, 0.675 with it). The calibrator stays the one fitted on the
calibration fold.

`sample_weight` (e.g. 1 / snapshots of the lead) weighs the trees, the early-stopping loss and the calibrator.
Inputs may be plain strings (e.g. read back from CSV): the model restores its own dtypes and category levels, and a
category never seen in training is scored as missing.
"""

from __future__ import annotations

import logging
import warnings

import lightgbm as lgb
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import DataConversionWarning
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from leadscore.features.keys import on_distinct, positions
from leadscore.models.treeshap import booster_contributions

log = logging.getLogger(__name__)
ISOTONIC_MIN_ROWS = 1000


class TooLittleDataError(ValueError):
    """Not enough positives or negatives to train a model worth using."""


def time_ordered_split(
    n: int, *, fraction: float, sample_time: pd.Series | None = None, gap_days: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of (earlier, later) rows: the later fold is the last `fraction` by time; earlier rows are strictly
    more than `gap_days` before the later fold starts, so their labels were known by then. Every row of one
    timestamp lands on one side (the later one); rows in the gap are in neither. Raises TooLittleDataError, saying
    why, when no earlier fold is left."""
    size = max(1, int(round(n * fraction)))
    if n < 2 or size >= n:
        raise TooLittleDataError(f"cannot split {n} rows into an earlier and a later {fraction:.0%}")
    if sample_time is None:
        boundary = n - size
        return np.arange(boundary), np.arange(boundary, n)
    times = pd.to_datetime(pd.Series(sample_time).reset_index(drop=True), utc=True)
    if times.isna().any():
        raise ValueError(f"{int(times.isna().sum())} row(s) without a time: a time-ordered split needs every time")
    start = times.sort_values(kind="stable").iloc[n - size]
    later = np.flatnonzero((times >= start).to_numpy())
    earlier = np.flatnonzero((times < start - pd.Timedelta(days=gap_days)).to_numpy())
    if len(earlier) == 0:
        raise TooLittleDataError(
            f"cannot split {n} rows by time: the latest {fraction:.0%} starts at {start.isoformat()} and no row lies "
            f"more than {gap_days:g} days before it (rows of one timestamp never go to both sides)"
        )
    return earlier, later


class ConversionModel(ClassifierMixin, BaseEstimator):
    """LightGBM conversion model with its own preprocessing and a calibrator on top."""

    def __init__(
        self,
        *,
        categorical_features: tuple[str, ...] = (),
        n_estimators: int = 600,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        max_depth: int = 6,
        min_child_samples: int = 40,
        reg_lambda: float = 1.0,
        colsample_bytree: float = 0.8,
        early_stopping_rounds: int = 50,
        validation_fraction: float = 0.2,
        validation_gap_days: float = 0.0,
        calibration: str = "auto",
        refit: bool = True,
        min_positives: int = 40,
        min_negatives: int = 40,
        random_state: int = 0,
        n_jobs: int = 2,
        monotone_constraints: dict[str, int] | None = None,
    ) -> None:
        self.categorical_features = categorical_features
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.max_depth = max_depth
        self.min_child_samples = min_child_samples
        self.reg_lambda = reg_lambda
        self.colsample_bytree = colsample_bytree
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.validation_gap_days = validation_gap_days
        self.calibration = calibration
        self.refit = refit
        self.min_positives = min_positives
        self.min_negatives = min_negatives
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.monotone_constraints = monotone_constraints

    # -- preprocessing -------------------------------------------------------------------------------------
    def _frame(self, X) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            return X
        if sp.issparse(X):
            raise TypeError("sparse input is not supported: pass a DataFrame or a dense array")
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"Expected 2D array, got {X.ndim}D array instead. Reshape your data.")
        if hasattr(self, "n_features_in_") and X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but ConversionModel is expecting {self.n_features_in_} features as input"
            )
        return pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])

    def _prepare(self, X) -> pd.DataFrame:
        """Columns in training order with training dtypes; unseen categories become missing."""
        frame = self._frame(X)
        if not all(isinstance(c, str) for c in frame.columns):  # fitted names are text: 0 and "0" are one column
            frame = frame.rename(columns=str)
        missing = [c for c in self.feature_names_in_ if c not in frame.columns]
        if missing:
            raise KeyError(f"columns missing from the input: {missing}")
        out = {}
        for column in self.feature_names_in_:
            values = frame[column]
            if column in self.categories_:
                levels = pd.Index(self.categories_[column])
                codes = on_distinct(  # -1: missing or never seen
                    values, lambda v, levels=levels: pd.Series(positions(v.astype("string").str.strip(), levels))
                ).to_numpy()
                out[column] = pd.Categorical.from_codes(codes, categories=levels)
            else:
                out[column] = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
        return pd.DataFrame(out, index=frame.index)

    def _learn_dtypes(self, X: pd.DataFrame) -> None:
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        unknown = [c for c in self.categorical_features if c not in X.columns]
        if unknown:
            raise KeyError(f"categorical feature(s) not in the data: {unknown}")
        self.categories_ = {}
        for column in self.categorical_features:
            levels = X[column].astype("string").str.strip().dropna().unique()
            self.categories_[column] = sorted(str(v) for v in levels)

    # -- fitting ---------------------------------------------------------------------------------------------
    def fit(self, X, y, *, sample_time=None, sample_weight=None) -> ConversionModel:
        if y is None:
            raise ValueError("ConversionModel requires y to be passed, but the target y is None")
        for fitted in ("n_features_in_", "feature_names_in_"):
            self.__dict__.pop(fitted, None)
        X = self._frame(X)
        if X.shape[1] == 0:
            raise ValueError(f"0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected", DataConversionWarning, stacklevel=2
            )
            y = y.ravel()
        check_classification_targets(y)
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
        self.classes_, y_codes = np.unique(y, return_inverse=True)
        if len(self.classes_) > 2:
            raise ValueError(f"Only binary classification is supported; got classes {list(self.classes_)}")
        if len(self.classes_) < 2:
            raise TooLittleDataError(f"the target has one class only ({list(self.classes_)}); need converted and not")
        positives, negatives = int((y_codes == 1).sum()), int((y_codes == 0).sum())
        if positives < self.min_positives or negatives < self.min_negatives:
            raise TooLittleDataError(
                f"found {positives} converted and {negatives} not-converted examples; need at least "
                f"{self.min_positives} and {self.min_negatives}. Add history (more closed deals), use cutoff "
                "snapshots (spine.policy = 'snapshots') or grade with the rules only (`leadscore grade`) until "
                "enough deals have closed; the minimums are model.min_positives / model.min_negatives."
            )
        weight = _weights(sample_weight, len(y_codes))
        if len(np.unique(y_codes[weight > 0])) < 2:
            raise TooLittleDataError("the rows with a positive sample_weight hold one class only; need both classes")
        # the conversion rate of the rows fitted, each weighted: what the 1-99 score reads probabilities against
        self.base_rate_ = float(np.average(y_codes, weights=weight))
        self._learn_dtypes(X)
        data = self._prepare(X)
        train, stopping, calibration = self._folds(len(data), sample_time)
        if len(np.unique(y_codes[train])) < 2:
            raise TooLittleDataError(f"the training fold ({len(train)} rows) holds only one class; add history")
        if len(calibration) and len(np.unique(y_codes[calibration])) < 2:
            log.warning(
                "the calibration fold (%d rows) holds only one class: probabilities left uncalibrated", len(calibration)
            )
            calibration = calibration[:0]
        booster = self._train_booster(data, y_codes, weight, train, stopping)
        self.best_iteration_ = int(booster.best_iteration or booster.current_iteration())
        margin = (
            booster.predict(data.iloc[calibration], raw_score=True, num_iteration=self.best_iteration_)
            if len(calibration)
            else np.zeros(0)
        )
        self.calibration_method_, self.calibrator_ = self._choose_calibrator(
            margin, y_codes[calibration], weight[calibration]
        )
        self.n_valid_ = len(stopping)
        self.n_calibration_ = len(calibration)
        if self.refit:
            booster = self._train_booster(data, y_codes, weight, np.arange(len(data)), None)
        self.booster_ = booster
        self.n_train_ = len(data) if self.refit else len(train)
        return self

    def _folds(self, n: int, sample_time) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(trees, early stopping, calibration): disjoint and in time order; no calibration fold without a
        calibrator."""
        train, valid = time_ordered_split(
            n, fraction=self.validation_fraction, sample_time=sample_time, gap_days=self.validation_gap_days
        )
        if self.calibration == "none":
            return train, valid, valid[:0]
        valid_time = None if sample_time is None else pd.Series(sample_time).reset_index(drop=True).iloc[valid]
        try:
            stopping, calibration = time_ordered_split(len(valid), fraction=0.5, sample_time=valid_time)
        except TooLittleDataError as exc:
            raise TooLittleDataError(
                f"the validation fold ({len(valid)} rows) cannot be split into an early-stopping and a calibration "
                f"fold: {exc}"
            ) from None
        return train, valid[stopping], valid[calibration]

    def _train_booster(self, data, y, weight, train, valid) -> lgb.Booster:
        """With a validation fold: early stopping up to `n_estimators`; without: exactly `best_iteration_` trees."""
        params = {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "max_depth": self.max_depth,
            "min_child_samples": self.min_child_samples,
            "reg_lambda": self.reg_lambda,
            "feature_fraction": self.colsample_bytree,
            "feature_fraction_seed": self.random_state,
            "seed": self.random_state,
            "deterministic": True,
            "num_threads": self.n_jobs,
            "verbosity": -1,
            "cat_smooth": 10,
            "min_data_per_group": 50,
        }
        categorical = [c for c in data.columns if c in self.categories_]
        if self.monotone_constraints:
            # +1 / -1 per declared column, 0 for the rest; a direction on a categorical column means nothing
            declared = self.monotone_constraints
            directions = [0 if c in self.categories_ else int(declared.get(c, 0)) for c in data.columns]
            params |= {"monotone_constraints": directions, "monotone_constraints_method": "intermediate"}
        train_set = lgb.Dataset(
            data.iloc[train], y[train], weight=weight[train], categorical_feature=categorical, free_raw_data=False
        )
        if valid is None:
            return lgb.train(
                params, train_set, num_boost_round=self.best_iteration_, callbacks=[progress(self.best_iteration_)]
            )
        valid_set = lgb.Dataset(
            data.iloc[valid], y[valid], weight=weight[valid], reference=train_set, categorical_feature=categorical
        )
        return lgb.train(
            params,
            train_set,
            num_boost_round=self.n_estimators,
            valid_sets=[valid_set],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False), progress(self.n_estimators)],
        )

    def _choose_calibrator(self, margin: np.ndarray, y: np.ndarray, weight: np.ndarray):
        """Fit the candidates on the earlier half of the calibration fold, keep the one with the lowest Brier
        score on the later half, then refit it on the whole fold. `auto` tries isotonic regression only from
        ISOTONIC_MIN_ROWS rows: on fewer its steps follow the noise (scikit-learn's guide says the same)."""
        candidates = [self.calibration]
        if self.calibration == "auto":
            candidates = ["sigmoid", "isotonic"] if len(margin) >= ISOTONIC_MIN_ROWS else ["sigmoid"]
        self.calibration_scores_ = {}
        if candidates == ["none"] or len(margin) == 0:
            return "none", None
        half = len(margin) // 2
        scores = {}
        if len(candidates) > 1 and len(np.unique(y[:half])) == 2:
            for method in candidates:
                calibrator = _fit_calibrator(method, margin[:half], y[:half], weight[:half])
                scores[method] = brier_score_loss(
                    y[half:], _apply(calibrator, margin[half:]), sample_weight=weight[half:]
                )
            method = min(scores, key=scores.get)
        else:
            method = candidates[0]
        self.calibration_scores_ = scores
        return method, _fit_calibrator(method, margin, y, weight)

    # -- prediction ------------------------------------------------------------------------------------------
    def raw_score(self, X) -> np.ndarray:
        """Uncalibrated log-odds of the booster (what SHAP contributions add up to)."""
        check_is_fitted(self, "booster_")
        return self.booster_.predict(self._prepare(X), raw_score=True, num_iteration=self.best_iteration_)

    def contributions(self, X) -> pd.DataFrame:
        """Exact TreeSHAP contributions per feature in log-odds, plus the `base_value` column: the values of
        LightGBM's `pred_contrib`, computed by models.treeshap in time linear in the depth."""
        check_is_fitted(self, "booster_")
        data = self._prepare(X)
        values = booster_contributions(self.booster_, data, num_iteration=self.best_iteration_, n_threads=self.n_jobs)
        return pd.DataFrame(values, columns=[*self.feature_names_in_, "base_value"], index=data.index)

    def predict_proba(self, X) -> np.ndarray:
        positive = self.probability_of_margin(self.raw_score(X))
        return np.column_stack([1 - positive, positive])

    def probability_of_margin(self, margin: np.ndarray) -> np.ndarray:
        """The calibrated probability of conversion for raw log-odds `margin`s (`raw_score`, or the sum of a row's
        `contributions`): what `predict_proba` gives, without predicting again."""
        check_is_fitted(self, "booster_")
        margin = np.asarray(margin, dtype="float64")
        positive = _apply(self.calibrator_, margin) if self.calibrator_ is not None else 1 / (1 + np.exp(-margin))
        return np.clip(positive, 0.0, 1.0)

    def predict(self, X) -> np.ndarray:
        probability = self.predict_proba(X)
        return self.classes_[np.argmax(probability, axis=1)]

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "booster_")
        return np.asarray(self.feature_names_in_, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        return tags


def _weights(sample_weight, n: int) -> np.ndarray:
    """Sample weights scaled to average 1 (so regularisation means the same with or without them)."""
    if sample_weight is None:
        return np.ones(n)
    weight = np.asarray(sample_weight, dtype=float).reshape(-1)
    if weight.shape != (n,):
        raise ValueError(f"sample_weight.shape == {weight.shape}, expected {(n,)}!")
    if not np.isfinite(weight).all() or (weight < 0).any() or weight.sum() <= 0:
        raise ValueError("sample_weight must be finite, non-negative and not all zero")
    return weight * n / weight.sum()


def _fit_calibrator(method: str, margin: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None):
    if method == "sigmoid":  # Platt scaling on the log-odds
        return LogisticRegression(C=1e6).fit(margin.reshape(-1, 1), y, sample_weight=weight)
    if method == "isotonic":
        # one pretend conversion at the lowest margin and one pretend loss at the highest: the end steps would
        # otherwise be exactly 0 or 1 whenever the fold's extreme leads all lost or all converted, a certainty that
        # a finite history never supports; steps of many rows barely move
        if len(margin):
            weight = np.concatenate([np.ones(len(margin)) if weight is None else weight, [1.0, 1.0]])
            margin = np.concatenate([margin, [margin.min(), margin.max()]])
            y = np.concatenate([y, [1, 0]])
        return IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(margin, y, sample_weight=weight)
    raise ValueError(f"unknown calibration {method!r}: use 'auto', 'sigmoid', 'isotonic' or 'none'")


def _apply(calibrator, margin: np.ndarray) -> np.ndarray:
    if isinstance(calibrator, LogisticRegression):
        return calibrator.predict_proba(margin.reshape(-1, 1))[:, 1]
    return calibrator.predict(margin)


PROGRESS_EVERY_SECONDS = 30.0


def progress(rounds: int, *, every_seconds: float = PROGRESS_EVERY_SECONDS):
    """A LightGBM callback that logs the boosting round every `every_seconds` (a long `train` says how far it got,
    a short one says nothing)."""
    import time

    started = time.monotonic()
    last = [started]

    def report(env) -> None:
        now = time.monotonic()
        if now - last[0] >= every_seconds:
            last[0] = now
            log.info("boosting round %d of at most %d (%.0f s)", env.iteration + 1, rounds, now - started)

    report.order = 30  # after early stopping's own bookkeeping
    return report
