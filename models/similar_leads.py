"""How leads like this one converted: the reference the reasons quote, built from the training rows and stored with
the fitted model (rule 2 of models/reasons.py).

A numeric feature's values are cut into bands at rounded quantiles (counts also at 1, 2, 3, 5, 10, ...; days at whole
days; company size at round employee counts; other measures at two significant figures of their scale), each band
merged with a neighbour until it holds MIN_BAND_ROWS rows; missing values and each category level seen on
MIN_LEVEL_ROWS rows get their own rate. Every rate weighs the rows by their sample weight (one lead = one).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.features.spec import FeatureSpec
from leadscore.models.wording import _round_employees

MIN_LEVEL_ROWS = 30  # a band's or category's conversion rate is quoted only when this many training rows had it
BAND_QUANTILES = np.linspace(0.1, 0.9, 9)  # where numeric values are cut into bands (before rounding and merging)
COUNT_STEPS = np.array([1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000], dtype="float64")  # extra cuts for counts
MIN_BAND_ROWS = 100  # a numeric band holds at least this many training rows: its rate is not one lead's luck


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Observed values at the weighted quantiles `q` (the inverted CDF: no interpolation between values)."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    at = np.searchsorted(cumulative, q * cumulative[-1], side="left")
    return values[order][np.clip(at, 0, len(values) - 1)]


def _nice_cuts(candidates: np.ndarray, spec: FeatureSpec | None, *, integer: bool) -> np.ndarray:
    """Cut points rounded to what the reason can say: whole days, whole per cent, round employee counts, one decimal
    for ratios, whole numbers for counts, two significant figures otherwise."""
    unit = spec.unit if spec is not None else ""
    if unit == "days":
        cuts = np.floor(candidates)
    elif unit == "%":
        cuts = np.round(candidates)
    elif unit == "log10 employees":
        cuts = np.log10(np.array([_round_employees(10**c - 1) for c in candidates], dtype="float64") + 1)
    elif unit == "x":
        cuts = np.round(candidates, 1)
    elif integer:
        cuts = np.round(candidates)
    else:  # two significant figures of the feature's scale (its largest cut), not of each cut: no "0.0015 to 0.29"
        step = _step(candidates)
        cuts = np.round(np.round(candidates / step) * step, 12)
    return np.unique(cuts)


def _step(candidates: np.ndarray) -> float:
    """The rounding step of two significant figures of the largest candidate cut (1 when there is none)."""
    scale = np.abs(candidates).max() if len(candidates) else 0.0
    return float(10 ** (np.floor(np.log10(scale)) - 1)) if scale > 0 else 1.0


def _merge_small_bands(cuts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Drop cuts until every band holds at least MIN_BAND_ROWS rows: the smallest band joins its smaller neighbour."""
    cuts = list(cuts)
    while cuts:
        rows = np.bincount(np.searchsorted(np.asarray(cuts), values, side="right"), minlength=len(cuts) + 1)
        smallest = int(np.argmin(rows))
        if rows[smallest] >= MIN_BAND_ROWS:
            break
        if smallest == 0:
            cuts.pop(0)
        elif smallest == len(cuts):
            cuts.pop()
        else:  # merge with the smaller neighbour: drop the cut between them
            cuts.pop(smallest - 1 if rows[smallest - 1] <= rows[smallest + 1] else smallest)
    return np.asarray(cuts, dtype="float64")


def _numeric_reference(values: np.ndarray, y: np.ndarray, w: np.ndarray, spec: FeatureSpec | None) -> dict:
    known = ~np.isnan(values)
    overall = float(np.average(y, weights=w)) if w.sum() > 0 else 0.0
    out: dict = {"typical": float(np.median(values[known])) if known.any() else None, "overall_rate": overall}
    missing = ~known
    out["missing_rate"] = float(np.average(y[missing], weights=w[missing])) if missing.sum() >= MIN_LEVEL_ROWS else None
    if known.sum() < MIN_LEVEL_ROWS:
        return out | {"cuts": [], "rates": [], "rows": []}
    v, yk, wk = values[known], y[known], w[known]
    integer = bool(np.all(v == np.round(v)))
    candidates = _weighted_quantiles(v, wk, BAND_QUANTILES)
    if integer:  # sparse counts: the quantiles of mostly zeros cut once; 1-2-5 steps tell 1 from 2 from 5 or more
        candidates = np.append(candidates, COUNT_STEPS[v.max() >= COUNT_STEPS])
    cuts = _nice_cuts(candidates, spec, integer=integer)
    lowest = v == v.min()
    if not integer and lowest.sum() >= MIN_BAND_ROWS and (~lowest).any():  # e.g. many exact zeros: a band of its own
        step = _step(candidates)  # down to a round number (none for a decayed 1e-08): the band holds the lowest only
        cuts = np.append(cuts, np.floor(v[~lowest].min() / step) * step)
    cuts = _merge_small_bands(np.unique(cuts[cuts > v.min()]), v)  # no empty first band
    band = np.searchsorted(cuts, v, side="right")
    weight = np.bincount(band, weights=wk, minlength=len(cuts) + 1)
    converted = np.bincount(band, weights=wk * yk, minlength=len(cuts) + 1)
    rates = np.divide(converted, weight, out=np.full(len(weight), overall), where=weight > 0)
    return out | {
        "cuts": cuts.tolist(),
        "rates": rates.tolist(),
        "rows": np.bincount(band, minlength=len(cuts) + 1).tolist(),
        "integer": integer,
        "lowest": float(v.min()),
        "first_single": bool(v[band == 0].max() == v.min()),  # the first band holds one value: say it
    }


def _categorical_reference(values: pd.Series, y: np.ndarray, w: np.ndarray) -> dict:
    text = values.astype("string").to_numpy(dtype=object, na_value=None)
    frame = pd.DataFrame({"level": text, "yw": y * w, "w": w}).dropna(subset=["level"])
    table = frame.groupby("level").agg(yw=("yw", "sum"), w=("w", "sum"), size=("w", "size"))
    rates = {str(k): float(r.yw / r.w) for k, r in table.iterrows() if r["size"] >= MIN_LEVEL_ROWS and r.w > 0}
    missing = np.asarray(values.isna(), dtype=bool)
    return {
        "rates": rates,
        "overall_rate": float(np.average(y, weights=w)) if w.sum() > 0 else 0.0,
        "missing_rate": float(np.average(y[missing], weights=w[missing])) if missing.sum() >= MIN_LEVEL_ROWS else None,
    }


def reason_reference(
    X: pd.DataFrame,
    converted,
    *,
    categorical: list[str],
    sample_weight=None,
    specs: dict[str, FeatureSpec] | None = None,
) -> dict:
    """Per feature, from training rows (each weighted by `sample_weight`, e.g. one lead = one): the conversion rate
    of the bands of a numeric feature (`cuts`, `rates`, `rows`, `missing_rate`) with its median (`typical`), or of
    each level of a categorical one (`rates`); levels and bands seen on fewer than MIN_LEVEL_ROWS rows get no rate.
    `overall_rate` is the average. `specs` give units, so that the bands cut where the reasons can say it."""
    y = np.asarray(converted, dtype="float64")
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype="float64")
    specs = specs or {}
    out: dict = {}
    for column in X.columns:
        if column in categorical:
            out[column] = _categorical_reference(X[column], y, w)
        else:
            values = pd.to_numeric(X[column], errors="coerce").astype("float64").to_numpy()
            out[column] = _numeric_reference(values, y, w, specs.get(column))
    return out


# -- per row: the rate of leads like this one --------------------------------------------------------------------------
def similar_rates(values: pd.Series, reference: dict | None) -> np.ndarray:
    """Each row's conversion rate among training leads like it (its band, level or missing value; NaN: none quoted)."""
    reference = reference or {}
    if "cuts" in reference:
        numbers = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
        cuts, rates = np.asarray(reference["cuts"], dtype="float64"), np.asarray(reference["rates"], dtype="float64")
        out = rates[np.searchsorted(cuts, numbers, side="right")] if len(rates) else np.full(len(numbers), np.nan)
        missing = reference.get("missing_rate")
        return np.where(np.isnan(numbers), np.nan if missing is None else missing, out)
    if "rates" in reference:
        missing = reference.get("missing_rate")
        rates = _level_rates(values, reference["rates"])
        return np.where(np.asarray(values.isna(), dtype=bool), np.nan if missing is None else missing, rates)
    return np.full(len(values), np.nan)


def _level_rates(values: pd.Series, rates: dict[str, float]) -> np.ndarray:
    """Each row's level conversion rate (NaN when not quoted), looked up once per distinct level."""
    if values.dtype == object:  # mixed objects: 1 and True would count as one level, yet read "1" and "True"
        return values.astype("string").map(rates).astype("float64").to_numpy()
    codes, distinct = pd.factorize(values, use_na_sentinel=True)
    per_level = pd.Series(distinct).astype("string").map(rates).astype("float64").to_numpy()
    return np.append(per_level, np.nan)[codes]  # code -1 (missing) reads the appended NaN
