"""Population stability: a profile of the training population, and the PSI of a scored population against it."""

from __future__ import annotations

import numpy as np
import pandas as pd

MISSING = "(missing)"
OTHER = "(other)"
EPSILON = 1e-4


def _numeric_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Rows per bin between `edges`, then the missing rows."""
    finite = ~np.isnan(values)
    counts = np.bincount(np.searchsorted(edges, values[finite], side="right"), minlength=len(edges) + 1)
    return np.append(counts, (~finite).sum())


def _numeric_shares(values: np.ndarray, edges: np.ndarray) -> list[float]:
    return (_numeric_counts(values, edges) / max(len(values), 1)).tolist()


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
            if len(finite):
                out[column]["range"] = [float(finite.min()), float(finite.max())]
    return out


def outside_range(reference: pd.DataFrame, frame: pd.DataFrame, *, categorical: list[str]) -> pd.Series:
    """Per numeric column, the share of `frame`'s rows whose value falls outside the range it had in `reference`
    (where trees score the edge value they saw and a linear model extrapolates); only columns with some, largest
    first."""
    shares = {}
    for column in frame.columns:
        if column in categorical or column not in reference:
            continue
        seen = pd.to_numeric(reference[column], errors="coerce").astype("float64")
        values = pd.to_numeric(frame[column], errors="coerce").astype("float64").to_numpy()
        if seen.notna().any() and len(values):
            shares[column] = float(((values < seen.min()) | (values > seen.max())).mean())
    result = pd.Series(shares, name="outside_share", dtype="float64")
    return result[result > 0].sort_values(ascending=False)


def outside_counts(reference: dict, frame: pd.DataFrame) -> dict[str, int]:
    """Per numeric column with a training range in the profile, the rows of `frame` outside it (counts of several
    chunks add up)."""
    counts = {}
    for column, ref in reference.items():
        if ref.get("kind") != "numeric" or "range" not in ref or column not in frame:
            continue
        low, high = ref["range"]
        values = pd.to_numeric(frame[column], errors="coerce").astype("float64").to_numpy()
        counts[column] = int(((values < low) | (values > high)).sum())
    return counts


def psi(expected: list[float] | np.ndarray, actual: list[float] | np.ndarray) -> float:
    e = np.clip(np.asarray(expected, float), EPSILON, None)
    a = np.clip(np.asarray(actual, float), EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def stability_counts(reference: dict, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per column of `frame` in the reference profile, its rows per reference bin: numeric, the bins between the
    edges then the missing rows; categorical, the reference's levels then the others. Counts of several frames add
    up to those of the frames put together, so a population scored in chunks is measured whole."""
    counts = {}
    for column, ref in reference.items():
        if column not in frame:
            continue
        if ref["kind"] == "categorical":
            levels = list(ref["shares"])
            per_value = frame[column].value_counts(dropna=False)  # distinct values first: a few per column
            text = pd.Series(per_value.index, dtype=object).astype("string").fillna(MISSING)
            label = text.where(text.isin(levels), OTHER)
            per_label = pd.Series(per_value.to_numpy()).groupby(label.to_numpy()).sum()
            counts[column] = per_label.reindex([*levels, OTHER], fill_value=0).to_numpy(dtype="int64")
        else:
            values = pd.to_numeric(frame[column], errors="coerce").astype("float64").to_numpy()
            counts[column] = _numeric_counts(values, np.asarray(ref["edges"]))
    return counts


def add_counts(total: dict[str, np.ndarray] | None, more: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Two frames' `stability_counts` as one."""
    return dict(more) if total is None else {column: total[column] + more[column] for column in total}


def stability_of_counts(reference: dict, counts: dict[str, np.ndarray]) -> pd.Series:
    """PSI per column from `stability_counts` (0: same; > 0.25: a large shift)."""
    result = {}
    for column, observed in counts.items():
        ref = reference[column]
        shares = observed / max(observed.sum(), 1)
        expected = [*ref["shares"].values(), 0.0] if ref["kind"] == "categorical" else ref["shares"]
        result[column] = psi(expected, shares)
    return pd.Series(result, name="psi", dtype="float64").sort_values(ascending=False)


def population_stability(reference: dict, frame: pd.DataFrame) -> pd.Series:
    """PSI per column of `frame` against the reference profile (0: same; > 0.25: a large shift)."""
    return stability_of_counts(reference, stability_counts(reference, frame))
