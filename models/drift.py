"""Population stability: a profile of the training population, and the PSI of a scored population against it."""

from __future__ import annotations

import numpy as np
import pandas as pd

MISSING = "(missing)"
OTHER = "(other)"
EPSILON = 1e-4


def _numeric_shares(values: np.ndarray, edges: np.ndarray) -> list[float]:
    finite = ~np.isnan(values)
    counts = np.bincount(np.searchsorted(edges, values[finite], side="right"), minlength=len(edges) + 1)
    shares = np.append(counts, (~finite).sum()) / max(len(values), 1)
    return shares.tolist()


def profile(frame: pd.DataFrame, *, categorical: list[str], bins: int = 10) -> dict:
    """Per column: decile edges and shares (numeric, plus a missing share) or level shares (categorical)."""
    out = {}
    for column in frame.columns:
        if column in categorical:
            text = frame[column].astype("string").fillna(MISSING)
            shares = text.value_counts(normalize=True)
            out[column] = {"kind": "categorical", "shares": {str(k): float(v) for k, v in shares.items()}}
        else:
            values = pd.to_numeric(frame[column], errors="coerce").astype("float64").to_numpy()
            finite = values[~np.isnan(values)]
            edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])) if len(finite) else np.array([])
            out[column] = {"kind": "numeric", "edges": edges.tolist(), "shares": _numeric_shares(values, edges)}
    return out


def psi(expected: list[float] | np.ndarray, actual: list[float] | np.ndarray) -> float:
    e = np.clip(np.asarray(expected, float), EPSILON, None)
    a = np.clip(np.asarray(actual, float), EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def population_stability(reference: dict, frame: pd.DataFrame) -> pd.Series:
    """PSI per column of `frame` against the reference profile (0: same; > 0.25: a large shift)."""
    result = {}
    for column, ref in reference.items():
        if column not in frame:
            continue
        if ref["kind"] == "categorical":
            levels = list(ref["shares"])
            text = frame[column].astype("string").fillna(MISSING)
            text = text.where(text.isin(levels), OTHER)
            actual = text.value_counts(normalize=True)
            expected = [*ref["shares"].values(), 0.0]
            observed = [float(actual.get(level, 0.0)) for level in levels] + [float(actual.get(OTHER, 0.0))]
            result[column] = psi(expected, observed)
        else:
            values = pd.to_numeric(frame[column], errors="coerce").astype("float64").to_numpy()
            result[column] = psi(ref["shares"], _numeric_shares(values, np.asarray(ref["edges"])))
    return pd.Series(result, name="psi").sort_values(ascending=False)
