"""Choosing the recipe from the data: rolling-origin evaluation over the latest time folds.

Neither family wins everywhere (logistic regression where the data drift out of the range trees saw, LightGBM where
features interact), and one validation fold misleads under drift (bank: the fold before the holdout favours LightGBM,
the holdout logistic regression). So each candidate recipe is fitted k times: fold i (of the last k equal time
blocks of the rows given) is scored by a fit on every row more than `gap_days` before it. The folds' scores are
averaged with weights 1, 2, ..., k (the latest counts most); the best average wins. Only development rows come
here: the holdout stays untouched for the final figures.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone

from leadscore.models.evaluation import HIGHER_IS_BETTER, evaluate
from leadscore.models.margin_model import TooLittleDataError

log = logging.getLogger(__name__)


def rolling_origin_folds(
    n: int, *, k: int, fold_fraction: float, sample_time: pd.Series | None = None, gap_days: float = 0.0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) positions of the last `k` time blocks of `fold_fraction` of the rows each, oldest first. Train is
    every row strictly more than `gap_days` before its test block starts; rows of one timestamp stay in one block."""
    size = max(1, int(round(n * fold_fraction)))
    if sample_time is None:
        order, times = np.arange(n), np.arange(n, dtype="float64")
        gap = 0.0
    else:
        stamps = pd.to_datetime(pd.Series(sample_time).reset_index(drop=True), utc=True)
        times = ((stamps - stamps.min()) / pd.Timedelta(days=1)).to_numpy(dtype="float64")
        order, gap = np.argsort(times, kind="stable"), gap_days
    folds = []
    for i in range(k, 0, -1):
        start_at, end_at = n - i * size, n - (i - 1) * size
        if start_at <= 0:
            continue
        start = times[order[start_at]]
        end = times[order[end_at]] if end_at < n else np.inf
        test = np.flatnonzero((times >= start) & (times < end))
        train = np.flatnonzero(times < start - gap)
        if len(test) and len(train):
            folds.append((train, test))
    return folds


@dataclass
class Choice:
    """The recipe chosen, every candidate's score per fold, and why, in words."""

    chosen: str
    recipe: object  # unfitted
    scores: pd.DataFrame  # candidate x fold, the metric on each fold
    weighted: dict[str, float]
    metric: str
    reason: str

    def as_dict(self) -> dict:
        return {
            "chosen": self.chosen,
            "metric": self.metric,
            "weighted": {name: round(v, 4) for name, v in self.weighted.items()},
            "folds": {name: [round(float(v), 4) for v in row] for name, row in self.scores.iterrows()},
            "reason": self.reason,
        }


def choose(
    candidates: dict[str, object],
    X: pd.DataFrame,
    y: pd.Series,
    *,
    folds: list[tuple[np.ndarray, np.ndarray]],
    sample_time: pd.Series | None = None,
    sample_weight: pd.Series | None = None,
    metric: str = "roc_auc",
) -> Choice:
    """The candidate (name -> unfitted recipe, first one the default) with the best recency-weighted score over
    `folds`. A fold where some candidate cannot be fitted, or holding one class, is left out for all of them."""
    y = pd.Series(np.asarray(y)).reset_index(drop=True)
    X = X.reset_index(drop=True)
    columns, kept = {}, []
    for number, (train, test) in enumerate(folds, start=1):
        if y.iloc[test].nunique() < 2:
            continue
        scores = _fold_scores(candidates, X, y, train, test, sample_time, sample_weight, metric)
        if scores is not None:
            columns[f"fold {number}"] = scores
            kept.append(number)
    default = next(iter(candidates))
    table = pd.DataFrame(columns, index=list(candidates), dtype="float64")
    if not kept:
        reason = f"{default} by default: too little history for rolling-origin folds"
        return Choice(default, candidates[default], table, {}, metric, reason)
    weights = np.asarray(kept, dtype="float64")  # fold i counts i times: the latest most
    weighted = {name: float(np.average(row.to_numpy(), weights=weights)) for name, row in table.iterrows()}
    sign = 1 if HIGHER_IS_BETTER[metric] else -1  # higher is better, or lower (Brier, log loss)
    chosen = max(weighted, key=lambda name: sign * weighted[name])
    others = " vs ".join(f"{weighted[n]:.3f} ({n})" for n in weighted if n != chosen)
    reason = f"{chosen} chosen: {metric} {weighted[chosen]:.3f} vs {others} on the last {len(kept)} folds"
    return Choice(chosen, candidates[chosen], table, weighted, metric, reason)


def _fold_scores(candidates, X, y, train, test, sample_time, sample_weight, metric) -> dict[str, float] | None:
    scores = {}
    for name, recipe in candidates.items():
        try:
            fitted = clone(recipe).fit(
                X.iloc[train],
                y.iloc[train],
                sample_time=None if sample_time is None else sample_time.iloc[train],
                sample_weight=None if sample_weight is None else sample_weight.iloc[train],
            )
        except TooLittleDataError as exc:
            log.info("a rolling-origin fold left out: %s cannot be fitted on %d rows (%s)", name, len(train), exc)
            return None
        scores[name] = float(evaluate(y.iloc[test], fitted.predict_proba(X.iloc[test])[:, 1])[metric])
    return scores
