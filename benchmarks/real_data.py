"""Model quality on the real public datasets (../shared/datasets), time-ordered, beside logistic regression.

Bank marketing (Moro et al. 2014, CC BY 4.0) without `duration`: trained once on the first 80 % of contacts, and
walk-forward over the last 20 % retraining every 1,000 contacts on all earlier ones. X Education leads (development
only): the last 20 % by lead number as holdout.
"""

from __future__ import annotations

import time

import pandas as pd

from benchmarks.common import REPO, print_table
from leadscore.pipelines.config import load_settings
from leadscore.pipelines.training_set import build_training_set
from leadscore.pipelines.verbs.backtest import Step, roc_auc_per_period, row_steps, run_backtest

COLUMNS = [
    "dataset",
    "protocol",
    "scorer",
    "rows_scored",
    "roc_auc",
    "pr_auc",
    "brier",
    "ece",
    "pred_obs",
    "worst_cal_minus_raw",
    "seconds",
]


def _rows(dataset: str, protocol: str, result, seconds: float) -> list[dict]:
    """One row per scorer, pooled over the periods; `pred_obs` is mean predicted / observed, `worst_cal_minus_raw`
    (the calibrated model's row) the lowest calibrated minus uncalibrated ROC AUC of any period."""
    scored = len(result.predictions)
    table = roc_auc_per_period(result.per_period)
    worst = float(table["calibrated_minus_raw"].min()) if "calibrated_minus_raw" in table else None
    return [
        {
            "dataset": dataset,
            "protocol": protocol,
            "scorer": scorer,
            "rows_scored": scored,
            "seconds": seconds,
            **{k: row[k] for k in ("roc_auc", "pr_auc", "brier", "ece")},
            "pred_obs": row["predicted_to_observed"],
            "worst_cal_minus_raw": worst if scorer == "lightgbm_calibrated" else None,
        }
        for scorer, row in result.pooled.iterrows()
    ]


def evaluate_dataset(config: str, dataset: str, *, walk_forward_every: int | None) -> list[dict]:
    settings = load_settings(REPO / "configs" / config)
    if not settings.resolve(settings.flat.path).exists():
        print(f"skipped {dataset}: {settings.resolve(settings.flat.path)} not found")
        return []
    training = build_training_set(settings)
    n = len(training.frame)
    boundary = int(n * 0.8)
    rows = []
    start = time.perf_counter()
    once = run_backtest(
        settings,
        training,
        [Step("last 20 %", pd.RangeIndex(boundary).to_numpy(), pd.RangeIndex(boundary, n).to_numpy())],
    )
    rows += _rows(dataset, "trained once on first 80 %", once, time.perf_counter() - start)
    if walk_forward_every:
        start = time.perf_counter()
        steps = row_steps(n, start=boundary, every=walk_forward_every)
        walk = run_backtest(settings, training, steps)
        rows += _rows(dataset, f"walk-forward, retrain every {walk_forward_every:,}", walk, time.perf_counter() - start)
    return rows


def main() -> None:
    rows = evaluate_dataset("bank_marketing.toml", "bank-additional-full", walk_forward_every=1000)
    rows += evaluate_dataset("x_education.toml", "x_education", walk_forward_every=None)
    print("\nreal data, time-ordered (reference: ../shared/datasets/README.md; published bank AUC 0.80)")
    print_table(rows, COLUMNS)
