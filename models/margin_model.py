"""What every conversion model shares, whatever its family: raw columns in, calibrated probability out.

A family (LightGBM in models.conversion, regularised logistic regression in models.linear) supplies three things: how
to fit its margin (log-odds) on some rows, the margin of new rows, and exact per-feature contributions that add up to
that margin. Everything else is here, once: dtypes and category levels learned from training and restored at
scoring, the three time-ordered folds (fit, early stopping, calibration), the calibrator (strictly increasing on the
margin, models.calibration, moved along the margin after the refit so that the refit is right on average on the
calibration fold), the refit on every row, recency weights, and the scikit-learn classifier interface.
Reasons, the report, `predict --contributions`, scores, the gate and MLflow use only this interface.

Recency (`recency`): "half_life" weighs each training row by 0.5 ** (age / (recency_half_life x span)), "window" keeps
only the rows whose age is at most recency_window x span, where age runs back from the latest training row and span
is the time from the earliest to the latest (row positions when the rows have no time). The calibrator is never
weighted (see models.conversion), nor is `base_rate_`: both describe the rows as they come.

Negative sampling (`negative_rate` below 1, for training sets too big to fit whole): the margin is fitted on every
converted row and a seeded draw of that share of the not-converted ones, reweighted by 1 / rate so that the weighted
rows stand for all of them; the calibration fold keeps every row, as the calibrator must match the rows as they come.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import DataConversionWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from leadscore.features.keys import on_distinct, positions
from leadscore.models.calibration import MarginCalibrator

log = logging.getLogger(__name__)
ISOTONIC_MIN_ROWS = 1000
RECENCY = ("none", "half_life", "window")


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


class MarginModel(ClassifierMixin, BaseEstimator):
    """Base of the conversion models: a family fits a margin; this class calibrates it and serves it.

    Subclasses set `family` and implement `_fit_margin(data, y, weight, rows, valid)` (fit on `rows`; `valid` is the
    early-stopping fold, None for the final refit), `_margin(data)` and `_contributions(data)` (n x (features + 1),
    the last column the base value), all on frames from `_prepare`.
    """

    family = "base"
    # class-level defaults: models pickled before recency existed still clone and compare (the gate refits them)
    recency = "none"
    recency_half_life = 0.25
    recency_window = 0.5
    negative_rate = 1.0

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
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting {self.n_features_in_} features "
                "as input"
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
    def fit(self, X, y, *, sample_time=None, sample_weight=None) -> MarginModel:
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
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
        fit_weight = _weights(weight * recency_weights(len(y_codes), self, sample_time), len(y_codes))
        kept, fit_weight = negative_sample(y_codes, fit_weight, rate=self.negative_rate, seed=self.random_state)
        self._learn_dtypes(X)
        data = self._prepare(X)
        train, stopping, calibration = self._folds(len(data), sample_time)
        train, stopping = train[kept[train]], stopping[kept[stopping]]  # the calibration fold: every row
        if len(np.unique(y_codes[train])) < 2:
            raise TooLittleDataError(f"the training fold ({len(train)} rows) holds only one class; add history")
        if len(calibration) and len(np.unique(y_codes[calibration])) < 2:
            log.warning(
                "the calibration fold (%d rows) holds only one class: probabilities left uncalibrated", len(calibration)
            )
            calibration = calibration[:0]
        self._fit_margin(data, y_codes, fit_weight, train, stopping)
        margin = self._margin(data.iloc[calibration]) if len(calibration) else np.zeros(0)
        self.calibration_method_, self.calibrator_ = self._choose_calibrator(margin, y_codes[calibration])
        self.n_valid_ = len(stopping)
        self.n_calibration_ = len(calibration)
        if self.refit:
            self._fit_margin(data, y_codes, fit_weight, np.flatnonzero(kept), None)
            if self.calibrator_ is not None:
                self.calibrator_.align(self._margin(data.iloc[calibration]), float(y_codes[calibration].mean()))
        self.n_train_ = int(kept.sum()) if self.refit else len(train)
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

    def _choose_calibrator(self, margin: np.ndarray, y: np.ndarray):
        """Fit the candidates on the earlier half of the calibration fold, keep the one with the lowest Brier
        score on the later half, then refit it on the whole fold. `auto` tries isotonic regression only from
        ISOTONIC_MIN_ROWS rows: on fewer its steps follow the noise (scikit-learn's guide says the same). Rows are
        not weighted (see the module's docstring)."""
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
                calibrator = _fit_calibrator(method, margin[:half], y[:half])
                scores[method] = brier_score_loss(y[half:], _apply(calibrator, margin[half:]))
            method = min(scores, key=scores.get)
        else:
            method = candidates[0]
        self.calibration_scores_ = scores
        return method, _fit_calibrator(method, margin, y)

    # -- prediction ---------------------------------------------------------------------------------------------
    def raw_score(self, X) -> np.ndarray:
        """Uncalibrated log-odds (what the contributions add up to)."""
        check_is_fitted(self, "calibration_method_")
        return self._margin(self._prepare(X))

    def margin(self, X) -> np.ndarray:
        """The model's log-odds before calibration: `raw_score`."""
        return self.raw_score(X)

    def contributions(self, X) -> pd.DataFrame:
        """Exact contributions per feature in log-odds, plus the `base_value` column; each row adds up to its
        margin."""
        check_is_fitted(self, "calibration_method_")
        data = self._prepare(X)
        values = self._contributions(data)
        return pd.DataFrame(values, columns=[*self.feature_names_in_, "base_value"], index=data.index)

    def predict_proba(self, X) -> np.ndarray:
        positive = self.probability_of_margin(self.raw_score(X))
        return np.column_stack([1 - positive, positive])

    def probability_of_margin(self, margin: np.ndarray) -> np.ndarray:
        """The calibrated probability of conversion for raw log-odds `margin`s (`raw_score`, or the sum of a row's
        `contributions`): what `predict_proba` gives, without predicting again."""
        check_is_fitted(self, "calibration_method_")
        margin = np.asarray(margin, dtype="float64")
        positive = _apply(self.calibrator_, margin) if self.calibrator_ is not None else 1 / (1 + np.exp(-margin))
        return np.clip(positive, 0.0, 1.0)

    def describe(self) -> str:
        """The fitted model in a few words, for train's summary."""
        return f"{self.family}, calibration: {self.calibration_method_}"

    def predict(self, X) -> np.ndarray:
        probability = self.predict_proba(X)
        return self.classes_[np.argmax(probability, axis=1)]

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "calibration_method_")
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


def negative_sample(y: np.ndarray, weight: np.ndarray, *, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows kept, weights): every converted row and a seeded draw of `rate` of the not-converted ones, each of those
    weighing 1 / rate more, so that the weighted conversion rate, and so the margin, stay unbiased. One draw per row
    of the whole data: a row is in or out of every fold alike."""
    if not 0 < rate <= 1:
        raise ValueError(f"negative_rate must be in (0, 1], got {rate!r}")
    if rate == 1:
        return np.ones(len(y), dtype=bool), weight
    kept = (y == 1) | (np.random.default_rng(seed).random(len(y)) < rate)
    return kept, np.where(y == 1, weight, weight / rate)


def _fit_calibrator(method: str, margin: np.ndarray, y: np.ndarray) -> MarginCalibrator:
    return MarginCalibrator(method).fit(margin, y)


def _apply(calibrator, margin: np.ndarray) -> np.ndarray:
    # models registered before the strictly increasing calibrators carry scikit-learn's own
    if isinstance(calibrator, LogisticRegression):
        return calibrator.predict_proba(margin.reshape(-1, 1))[:, 1]
    return calibrator.predict(margin)


def recency_weights(n: int, model, sample_time=None) -> np.ndarray:
    """Row weights for the model's `recency` (see the module's docstring): ones for "none"."""
    if model.recency not in RECENCY:
        raise ValueError(f"unknown recency {model.recency!r}: use one of {list(RECENCY)}")
    if model.recency == "none" or n == 0:
        return np.ones(n)
    if sample_time is None:
        position = np.arange(n, dtype="float64")  # row-ordered data: the row order is the time order
    else:
        times = pd.to_datetime(pd.Series(sample_time).reset_index(drop=True), utc=True)
        position = ((times - times.min()) / pd.Timedelta(days=1)).to_numpy(dtype="float64")
    span = float(position.max() - position.min())
    if span <= 0:
        return np.ones(n)
    age = (position.max() - position) / span
    if model.recency == "half_life":
        return 0.5 ** (age / model.recency_half_life)
    return (age <= model.recency_window).astype("float64")
