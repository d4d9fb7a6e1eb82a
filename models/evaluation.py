"""Metrics for a probability of conversion on a time-ordered holdout, for the model and its baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

METRICS = (
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "ece",
    "lift_top10",
    "capture_top10",
    "lift_top20",
    "capture_top20",
)
# reported beside METRICS, not a gate metric: mean predicted probability / observed rate (1 = right on average)
REPORTED = (*METRICS, "predicted_to_observed")
HIGHER_IS_BETTER = {
    "roc_auc": True,
    "pr_auc": True,
    "log_loss": False,
    "brier": False,
    "ece": False,
    "lift_top10": True,
    "capture_top10": True,
    "lift_top20": True,
    "capture_top20": True,
}


def expected_calibration_error(y: np.ndarray, p: np.ndarray, *, bins: int = 10) -> float:
    """Mean |observed rate - mean predicted| over equal-width probability bins, weighted by bin size."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(y[inside].mean() - p[inside].mean())
    return float(total)


def top_share(y: np.ndarray, p: np.ndarray, share: float) -> tuple[float, float]:
    """(lift, share of all conversions captured) among the `share` highest-scored rows; ties broken stably."""
    k = max(1, int(np.ceil(len(p) * share)))
    top = np.argsort(-p, kind="stable")[:k]
    rate = y.mean()
    captured = y[top].sum() / y.sum() if y.sum() else np.nan
    return (float(y[top].mean() / rate) if rate else np.nan), float(captured)


def evaluate(y, p) -> dict[str, float]:
    """Holdout metrics of probabilities `p`; the ranking metrics read `p` as given (clipping would tie the leads it
    touches), only log loss reads it kept off 0 and 1."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    lift10, capture10 = top_share(y, p, 0.10)
    lift20, capture20 = top_share(y, p, 0.20)
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else np.nan,
        "pr_auc": float(average_precision_score(y, p)) if both else np.nan,
        "log_loss": float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "lift_top10": lift10,
        "capture_top10": capture10,
        "lift_top20": lift20,
        "capture_top20": capture20,
        "predicted_to_observed": float(p.mean() / y.mean()) if y.mean() > 0 else np.nan,
    }


def calibration_table(y, p, *, bins: int = 10) -> pd.DataFrame:
    """Rows in each decile of the score: count, mean predicted probability, observed conversion rate."""
    frame = pd.DataFrame({"y": np.asarray(y, float), "p": np.asarray(p, float)})
    frame["decile"] = pd.qcut(frame["p"].rank(method="first"), bins, labels=range(1, bins + 1))
    table = frame.groupby("decile", observed=True).agg(
        rows=("y", "size"), mean_predicted=("p", "mean"), observed_rate=("y", "mean")
    )
    return table.reset_index()


def metrics_table(scores: dict[str, dict[str, float]]) -> pd.DataFrame:
    """One row per scorer (model, baselines), one column per metric."""
    return pd.DataFrame.from_dict(scores, orient="index").reindex(columns=list(REPORTED))


def is_better(challenger: float, champion: float, metric: str, *, min_improvement: float = 0.0) -> bool:
    """Strictly better by more than `min_improvement`: a tie keeps the champion."""
    if np.isnan(champion):
        return True
    if HIGHER_IS_BETTER[metric]:
        return challenger > champion + min_improvement
    return challenger < champion - min_improvement
