"""Leak guards: features that give the outcome away.

Two signatures of a column filled after (or because of) the outcome:
- it separates the outcomes on its own: its value, or whether it is missing, reaches a single-feature ROC AUC above
  a threshold on the time-ordered holdout, or marks a group of rows that all converted or none did (a rep's
  "closed" tag; an account entered only for deals that closed);
- its missing share differs between the training rows and the leads that will be scored (a field filled only when
  a deal closes is present on every closed deal and missing on every open one).

A genuinely strong feature passes both: its groups convert at some rate between 0 % and 100 %, and it is missing as
often on the open leads as on the closed ones. Pure: frames in, findings out; `train` names each finding in one
line and refuses promotion while a leak's signature stands, and the analyst report shows the separation findings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

MISSING = "(missing)"
BINS = 10  # numeric features are scored by decile (plus a missing bin): any shape, not only a monotone one
FEW_VALUES = 5  # a numeric feature with at most this many values is a coded category for the pure-group check


@dataclass(frozen=True)
class LeakThresholds:
    """When a feature is suspect (the defaults of `[features] suspect_*`)."""

    roc_auc: float = 0.95  # a single feature alone above this on the holdout
    group_rows: int = 30  # a pure group (all converted, or none) needs at least this many training rows ...
    group_expected: float = 10.0  # ... and at least this many of the missing outcome expected at the overall rate
    missing_gap: float = 0.25  # missing shares of training rows and scored leads further apart than this


@dataclass(frozen=True)
class Suspect:
    """One feature found suspect by one check, with its finding in words."""

    feature: str
    check: str  # "separates" (value or missingness vs the label) or "missing_gap" (training rows vs scored leads)
    text: str
    blocks: bool = True  # a leak's signature; False: a shift to know about, not a reason to refuse a model


def _factorized(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Integer codes of a column's values, the missing rows a code of their own (the last), and the labels."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    codes = np.where(codes < 0, len(uniques), codes)
    return codes, [str(u) for u in uniques] + [MISSING]


def value_groups(values: pd.Series, *, categorical: bool) -> pd.Series:
    """The groups a pure-group check looks at: each category and the missing rows. A number is a category when the
    feature takes at most `FEW_VALUES` values (a flag, a count of filled fields); otherwise only its missing rows
    form a group (a lead age or a visit count converting at 0 % over a range is a finding of the model, not a leak)."""
    if categorical or values.nunique() <= FEW_VALUES:
        codes, labels = _factorized(values)
    else:
        codes, labels = np.where(values.isna().to_numpy(), 0, -1), [MISSING]
    return pd.Series(pd.Categorical.from_codes(codes, categories=pd.Index(labels, dtype=object)), index=values.index)


def pure_groups(
    groups: pd.Series, converted: pd.Series, *, thresholds: LeakThresholds, weights: pd.Series | None = None
) -> pd.DataFrame:
    """Groups of at least `group_rows` rows that all converted or none did, where the overall conversion rate would
    have given them at least `group_expected` of the other outcome (so chance cannot explain it). With `weights` (the
    spine's 1 / rows per lead) a lead counts once in that expectation: its snapshots are not independent draws.
    Columns: group, rows, leads (rows without weights), converted, expected (of the outcome that never happened);
    largest first."""
    groups = groups.astype("category")
    y = converted.to_numpy(dtype="float64")
    w = np.ones(len(y)) if weights is None else weights.to_numpy(dtype="float64")
    codes, labels = groups.cat.codes.to_numpy(), list(groups.cat.categories)
    inside = codes >= 0
    k = len(labels)
    table = pd.DataFrame(
        {
            "group": labels,
            "rows": np.bincount(codes[inside], minlength=k),
            "leads": np.bincount(codes[inside], w[inside], minlength=k),
            "converted": np.bincount(codes[inside], (w * y)[inside], minlength=k),
        }
    )
    rate = float((w * y).sum() / w.sum())
    none, every = table["converted"] == 0, np.isclose(table["converted"], table["leads"])
    table["expected"] = np.where(none, table["leads"] * rate, table["leads"] * (1 - rate))
    big = (table["rows"] >= thresholds.group_rows) & (table["expected"] >= thresholds.group_expected)
    return table[(none | every) & big].sort_values("rows", ascending=False, kind="stable").reset_index(drop=True)


def _levels(values: pd.Series, dev: np.ndarray, *, categorical: bool) -> np.ndarray:
    """A feature as integer levels: its category or its decile on the development rows; missing is a level."""
    if categorical:
        return _factorized(values)[0]
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
    known = numbers[dev][~np.isnan(numbers[dev])]
    edges = np.unique(np.quantile(known, np.linspace(0, 1, BINS + 1)[1:-1])) if len(known) else np.array([])
    return np.where(np.isnan(numbers), len(edges) + 1, np.searchsorted(edges, numbers, side="right"))


def single_feature_auc(
    values: pd.Series,
    converted: pd.Series,
    dev: np.ndarray,
    holdout: np.ndarray,
    *,
    categorical: bool,
    weights: pd.Series | None = None,
) -> float | None:
    """Holdout ROC AUC of the feature alone: each level's conversion rate on the development rows (missing is a
    level; numbers by decile) scores the holdout rows; the better of the two directions. None with one class."""
    y = converted.to_numpy(dtype="float64")
    w = np.ones(len(y)) if weights is None else weights.to_numpy(dtype="float64")
    if len(np.unique(y[holdout])) < 2:
        return None
    levels = _levels(values, dev, categorical=categorical)
    size = int(levels.max()) + 1
    rows = np.bincount(levels[dev], w[dev], minlength=size)
    hits = np.bincount(levels[dev], (w * y)[dev], minlength=size)
    overall = hits.sum() / max(rows.sum(), 1e-12)
    rates = np.where(rows > 0, hits / np.maximum(rows, 1e-12), overall)  # a level unseen before: the overall rate
    auc = float(roc_auc_score(y[holdout], rates[levels[holdout]], sample_weight=w[holdout]))
    return max(auc, 1 - auc)


def _group_words(feature: str, found: pd.DataFrame, rate: float, *, weighted: bool) -> str:
    g = found.iloc[0]
    where = "missing" if g["group"] == MISSING else f"= {g['group']!r}"
    if g["converted"] == 0:
        outcome, would = "none of which converted", "would have"
    else:
        outcome, would = "every one of which converted", "would not have"
    leads = f" ({g['leads']:,.0f} leads)" if weighted else ""
    more = f"; {len(found) - 1} more such group(s)" if len(found) > 1 else ""
    return (
        f"{where} on {int(g['rows']):,} training rows{leads}, {outcome} (at the overall {rate:.1%} about "
        f"{g['expected']:,.0f} {would}){more}"
    )


def separating_features(
    frame: pd.DataFrame,
    *,
    features: list[str],
    categorical: list[str],
    dev: np.ndarray,
    holdout: np.ndarray,
    thresholds: LeakThresholds = LeakThresholds(),
    weights: pd.Series | None = None,
) -> list[Suspect]:
    """Features whose value or missingness alone separates `frame["converted"]`: a pure group among all rows, or a
    single-feature holdout ROC AUC above the threshold. One finding per feature, in feature order. `weights`: the
    spine's per-row weights (every lead counts once), None for one row per lead."""
    y = frame["converted"]
    w = np.ones(len(y)) if weights is None else weights.to_numpy(dtype="float64")
    rate = float((w * y.to_numpy(dtype="float64")).sum() / w.sum())
    found = []
    for name in features:
        is_categorical = name in categorical
        reasons = []
        groups = value_groups(frame[name], categorical=is_categorical)
        pure = pure_groups(groups, y, thresholds=thresholds, weights=weights)
        if len(pure):
            reasons.append(_group_words(name, pure, rate, weighted=weights is not None))
        auc = single_feature_auc(frame[name], y, dev, holdout, categorical=is_categorical, weights=weights)
        if auc is not None and auc > thresholds.roc_auc:
            reasons.append(f"alone it reaches holdout ROC AUC {auc:.3f} (> {thresholds.roc_auc:g})")
        if reasons:
            text = f"suspect feature {name}: " + "; ".join(reasons) + ": it separates the outcomes by itself"
            found.append(Suspect(name, "separates", text))
    return found


def missing_share_gaps(
    training: pd.DataFrame,
    scored: pd.DataFrame,
    *,
    features: list[str],
    thresholds: LeakThresholds = LeakThresholds(),
    scored_name: str = "leads predict would score",
) -> list[Suspect]:
    """Features whose missing share differs by more than the threshold between the scored leads and the training
    rows. Missing more often on the scored leads is the signature of a field filled only at closing (it blocks);
    missing less often is a field filled more than it used to be (a new form field, a changed process, a campaign
    that reached people contacted before): named, not a leak. One finding per feature, in feature order; nothing
    when no lead is scored."""
    if scored.empty or training.empty:
        return []
    found = []
    for name in features:
        if name not in scored:
            continue
        trained, scoring = float(training[name].isna().mean()), float(scored[name].isna().mean())
        if abs(scoring - trained) > thresholds.missing_gap:
            closing = scoring > trained
            meaning = (
                "the signature of a field filled only when a deal closes"
                if closing
                else "filled more often now than in the training rows: a shift, not a leak"
            )
            text = (
                f"suspect feature {name}: missing on {scoring:.1%} of the {len(scored):,} {scored_name} but on "
                f"{trained:.1%} of the {len(training):,} training rows (gap > {thresholds.missing_gap:.0%}): {meaning}"
            )
            found.append(Suspect(name, "missing_gap", text, blocks=closing))
    return found
