"""The 1-99 score: the calibrated probability read against the model's base rate, 10 points per doubling of the odds.

`probability` is the calibrated chance of converting within the horizon; at a 4 % base rate most open leads are
dormant and sit far below 1 %, so `probability x 100` bunches at 0, and a rank among all open leads (the score
before issue 28) gave 75 to a lead with a probability of 0.02 %: sellers read 75 as "likely". The score here is a
likelihood scale instead, as credit scorecards have long been built (a fixed number of points to double the odds):

    score = 50 + 10 x log2(odds(probability) / odds(base rate)), rounded down and kept within 1..99

50 is the base rate: the model's average lead (the training rows' conversion rate, each lead counted once), so 60
is twice the odds of that lead, 70 four times, 40 half. Below about 10 % odds and probability move together, so
"twice the odds" is "about twice as likely". Because the score only rises with the probability, a score of 50 or
more never comes with a probability below the base rate (70 or more: at least four times its odds), in every run
and on every engine, and a lead's score moves only when its probability does.

The base rate is a fact of the fitted model (`ConversionModel.base_rate_`); `base_rate_of` falls back for models
trained before it was stored.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

POINTS_TO_DOUBLE = 10.0  # score points per doubling of the odds against the base rate
MIDDLE = 50  # the score of a lead exactly as likely as the base rate
_EDGE = 1e-12  # probabilities of exactly 0 or 1 have infinite log-odds: they score 1 or 99


def score_1_99(probability: np.ndarray, base_rate: float) -> np.ndarray:
    """1-99 from calibrated probabilities: MIDDLE at `base_rate`, POINTS_TO_DOUBLE points per doubling of the odds,
    rounded down (a lead scores 50 or more only when at least as likely as the base rate). Missing probabilities: -1."""
    if not 0.0 < base_rate < 1.0:
        raise ValueError(f"the base rate must lie strictly between 0 and 1, got {base_rate!r}")
    p = np.asarray(probability, dtype="float64")
    known = np.isfinite(p)
    # the tiny tolerance keeps a probability equal to the base rate (up to rounding) at exactly MIDDLE
    score = np.floor(score_points(np.where(known, p, base_rate), base_rate) + 1e-9)
    return np.where(known, np.clip(score, 1, 99), -1).astype("int64")


def score_points(probability: np.ndarray, base_rate: float) -> np.ndarray:
    """The score before it is rounded down and kept within 1..99: MIDDLE + POINTS_TO_DOUBLE x log2 of the odds
    ratio. What a change of the score is split on (models.movement): differences of it are exact."""
    clipped = np.clip(np.asarray(probability, dtype="float64"), _EDGE, 1.0 - _EDGE)
    log2_ratio = np.log2(clipped / (1.0 - clipped)) - np.log2(base_rate / (1.0 - base_rate))
    return MIDDLE + POINTS_TO_DOUBLE * log2_ratio


def probability_at_score(score: float, base_rate: float) -> float:
    """The lowest probability that scores `score` (what a score band means: 70 = at least this likely)."""
    odds = base_rate / (1.0 - base_rate) * 2.0 ** ((score - MIDDLE) / POINTS_TO_DOUBLE)
    return odds / (1.0 + odds)


def base_rate_of(model, reason_reference: dict | None = None) -> tuple[float | None, str]:
    """(base rate, where it came from): the model's own `base_rate_`, else (a model trained before it was stored)
    the training rows' conversion rate quoted in its reason reference, else None: the caller must decide."""
    rate = getattr(model, "base_rate_", None)
    if rate is not None and 0.0 < float(rate) < 1.0:
        return float(rate), "the model's base rate"
    for entry in (reason_reference or {}).values():
        overall = entry.get("overall_rate") if isinstance(entry, dict) else None
        if overall is not None and 0.0 < float(overall) < 1.0:
            return float(overall), "the training conversion rate stored with the model's reasons (an older model)"
    return None, "none stored with the model"


def percentile_in_run(probability: np.ndarray) -> np.ndarray:
    """Each row's rank within this run, 0-100 to one decimal: the share of rows with a probability no higher (ties
    share the highest rank). Like the score it only rises with the probability, so the two never disagree on order."""
    return percent_of_share(pd.Series(np.asarray(probability, dtype="float64")).rank(method="max", pct=True)).to_numpy()


def percent_of_share(share: pd.Series) -> pd.Series:
    """A share (0-1) as a percent to one decimal, rounded as numpy rounds (half to even on the scaled float): one
    rounding for every engine (Spark's own `round` rounds the exact decimal half up, and differs on some ranks)."""
    return (share * 100).round(1)
