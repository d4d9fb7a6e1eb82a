"""The 1-99 score: a lead's rank within a reference population fixed when the model was trained.

`probability` is the calibrated chance of converting; at a 2 % base rate nine leads in ten have a probability
under 5 %, so `probability x 100` bunches at 0. The score instead places each lead within the scoring population
as of training (every lead open at the training as-of, scored by the model): score 80 means the lead ranks above
about 80 % of that population. The reference is stored with the model, so a score means the same thing in every
run of that model, unlike `percentile`, which ranks a lead within the current run only.

The rank is taken on the model's margin (log-odds), to which the calibrator is a strictly increasing map: leads are
ordered exactly as by the calibrated probability (and models registered with an older, stepwise isotonic calibrator
still tell apart the leads on one of its steps).
"""

from __future__ import annotations

import numpy as np

QUANTILES = 2001  # a quantile summary of the reference: enough to resolve 1 % steps, small enough to store


def score_reference(raw_score: np.ndarray, *, population: str) -> dict:
    """The reference distribution of a scored population, as quantiles of its margin."""
    values = np.asarray(raw_score, dtype="float64")
    values = values[np.isfinite(values)]
    if len(values) == 0:
        raise ValueError("the score reference needs at least one finite score")
    quantiles = np.quantile(values, np.linspace(0, 1, min(QUANTILES, len(values))))
    return {"measure": "raw_score", "quantiles": quantiles.tolist(), "size": int(len(values)), "population": population}


def rank_in(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Share of the reference below each value, counting ties as half (mid-rank), in [0, 1]."""
    below = np.searchsorted(reference, values, side="left")
    not_above = np.searchsorted(reference, values, side="right")
    return (below + not_above) / (2.0 * len(reference))


def score_1_99(raw_score: np.ndarray, reference: dict) -> np.ndarray:
    """1-99: the rank of each margin within the reference, in 99 equal steps (missing margins: -1)."""
    values = np.asarray(raw_score, dtype="float64")
    quantiles = np.asarray(reference["quantiles"], dtype="float64")
    score = np.clip(np.floor(rank_in(values, quantiles) * 99).astype("int64") + 1, 1, 99)
    return np.where(np.isfinite(values), score, -1)
