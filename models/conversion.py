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

`sample_weight` (e.g. 1 / snapshots of the lead) weighs the trees and the early-stopping loss, not the calibrator: the
probability must match the rows as they come (one per lead and cutoff, as the holdout and the open leads at scoring
are), and weighing each lead equally counts converting leads, which have fewer snapshots, about twice (sample data:
mean predicted 1.29x the observed rate on the holdout with a weighted calibrator, 0.99x without). The calibrator is
a strictly increasing map of the margin (models.calibration), so it never ties leads the trees tell apart.
Inputs may be plain strings (e.g. read back from CSV): the model restores its own dtypes and category levels, and a
category never seen in training is scored as missing.
"""

from __future__ import annotations

import logging

import lightgbm as lgb
import numpy as np
import pandas as pd

from leadscore.models.margin_model import (
    ISOTONIC_MIN_ROWS,
    MarginModel,
    TooLittleDataError,
    _apply,
    _fit_calibrator,
    _weights,
    time_ordered_split,
)
from leadscore.models.treeshap import booster_contributions

__all__ = [
    "ISOTONIC_MIN_ROWS",
    "ConversionModel",
    "TooLittleDataError",
    "_apply",
    "_fit_calibrator",
    "_weights",
    "progress",
    "time_ordered_split",
]
log = logging.getLogger(__name__)


class ConversionModel(MarginModel):
    """LightGBM conversion model with its own preprocessing and a calibrator on top."""

    family = "lightgbm"

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
        recency: str = "none",
        recency_half_life: float = 0.25,
        recency_window: float = 0.5,
        negative_rate: float = 1.0,
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
        self.recency = recency
        self.recency_half_life = recency_half_life
        self.recency_window = recency_window
        self.negative_rate = negative_rate

    # -- the family's margin ----------------------------------------------------------------------------------
    def _fit_margin(self, data, y, weight, rows, valid) -> None:
        """Trees on `rows`, early-stopped on `valid`; the final refit (`valid` None) grows the trees chosen then."""
        booster = self._train_booster(data, y, weight, rows, valid)
        if valid is not None:
            self.best_iteration_ = int(booster.best_iteration or booster.current_iteration())
        self.booster_ = booster

    def _margin(self, data: pd.DataFrame) -> np.ndarray:
        return self.booster_.predict(data, raw_score=True, num_iteration=self.best_iteration_)

    def _contributions(self, data: pd.DataFrame) -> np.ndarray:
        """Exact TreeSHAP: the values of LightGBM's `pred_contrib`, computed by models.treeshap in time linear in
        the depth."""
        return booster_contributions(self.booster_, data, num_iteration=self.best_iteration_, n_threads=self.n_jobs)

    def describe(self) -> str:
        return f"LightGBM, {self.best_iteration_} trees, calibration: {self.calibration_method_}"

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
        rows = data if len(train) == len(data) else data.iloc[train]  # positions are distinct: all rows, in order
        train_set = lgb.Dataset(
            rows, y[train], weight=weight[train], categorical_feature=categorical, free_raw_data=False
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
