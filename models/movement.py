"""Why a lead's score moved between two scoring runs, from the exact contributions stored with each run.

A run keeps, per lead, its margin (the booster's log-odds: the sum of its SHAP contributions and the base value) and
its `top` largest contributions by absolute value with the feature values behind them (`compact_contributions`).
`score_movement` compares a run with each lead's previous one:

* `score_change` = score now - score then (both the stored 1-99 integers);
* the change is split into parts that add up to it exactly. A concept's part (features measuring one idea, as the
  reasons group them) is the change of its features' contributions, in log-odds, times the points one unit of
  log-odds is worth between the two margins: 10 / ln 2 where the probability is the logistic of the margin, the
  chord of the calibration otherwise (`points_of_margin` gives the unrounded score of a margin under the current
  model). A feature outside a run's stored top contributions counts as 0 in that run: it was at most the smallest
  stored one, so a part is exact up to that (well under a point at 10 kept on the sample data);
* when the model changed between the runs, only features whose value changed get a part (a feature with the same
  value moved because the model did), and the rest of the change is the model's part: "new model v4 (was v3)";
* the two largest parts by absolute value are the `change_reasons`, rounded so that with the remainder ("other
  changes": the features not named, the unstored tail, the score's rounding down and its 1-99 bounds) they add up
  to `score_change` exactly: "Pricing-page views in the last 7 days: 0 -> 5, +31 points".
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from leadscore.features.spec import FeatureSpec
from leadscore.models.reasons import SEPARATOR
from leadscore.models.wording import _missing, format_value

__all__ = ["compact_contributions", "parse_contributions", "score_movement"]

REASONS = 2  # change reasons per lead, as the issue asks: the two largest parts
_TINY = 1e-9  # log-odds below which two margins are one (the chord's slope is then the tangent's)


# -- what a run stores -----------------------------------------------------------------------------------------------
def _plain(value: object) -> object:
    """A feature value JSON can hold: a float, a string (a category), or None when missing."""
    if _missing(value):
        return None
    if isinstance(value, bool | np.bool_):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None


def compact_contributions(contributions: pd.DataFrame, values: pd.DataFrame, *, top: int) -> list[str | None]:
    """Per row, its `top` largest contributions by absolute value as JSON, largest first: `[[feature, contribution,
    value], ...]`, contributions to 6 decimals (a millionth of a log-odds is far below a score point). None when
    `top` is 0."""
    features = [c for c in contributions.columns if c != "base_value"]
    if top <= 0 or not features:
        return [None] * len(contributions)
    matrix = contributions[features].to_numpy(dtype="float64")
    top = min(top, len(features))
    largest = np.argpartition(-np.abs(matrix), top - 1, axis=1)[:, :top]
    order = np.take_along_axis(largest, np.argsort(-np.abs(np.take_along_axis(matrix, largest, 1)), axis=1), 1)
    # built as text, a column of cells at a time: json.dumps of every lead's list cost 0.08 ms a lead
    chosen = np.take_along_axis(matrix, order, 1)
    cells = np.take_along_axis(_plain_columns(values[features]), order, 1)
    names = np.asarray(features, dtype=object)[order]
    if not np.isfinite(chosen).all():  # NaN or infinity: written as json.dumps writes them
        return [
            json.dumps([[n, round(float(c), 6), v] for n, c, v in zip(*row, strict=True)], separators=(",", ":"))
            for row in zip(names, chosen, cells, strict=True)
        ]
    quoted = {name: json.dumps(name) for name in features}
    # what json.dumps writes for a `_plain` value (None, a finite float, a string), inline: a call per cell costs more
    texts = [
        f"[{quoted[n]},{round(c, 6)!r},{'null' if v is None else repr(v) if v.__class__ is float else json.dumps(v)}]"
        for n, c, v in zip(names.ravel().tolist(), chosen.ravel().tolist(), cells.ravel().tolist(), strict=True)
    ]
    return ["[" + ",".join(texts[i : i + top]) + "]" for i in range(0, len(texts), top)]


def _plain_columns(values: pd.DataFrame) -> np.ndarray:
    """`_plain` of every cell, as an object matrix: numbers converted a column at a time, other columns once per
    distinct value."""
    columns = []
    for name in values.columns:
        column = values[name]
        if pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
            numbers = column.to_numpy(dtype="float64", na_value=np.nan)
            cells = numbers.astype(object)
            cells[~np.isfinite(numbers)] = None
        else:
            codes, levels = pd.factorize(column, use_na_sentinel=True)
            cells = np.array([*map(_plain, levels), None], dtype=object)[codes]  # code -1 reads the appended None
        columns.append(cells)
    return np.column_stack(columns) if columns else np.empty((len(values), 0), dtype=object)


def parse_contributions(text: object) -> dict[str, tuple[float, object]] | None:
    """{feature: (contribution, value)} of a stored `top_contributions`; None when the run stored none."""
    if _missing(text) or text == "":
        return None
    return {name: (float(contribution), value) for name, contribution, value in json.loads(str(text))}


# -- the parts of one lead's change ----------------------------------------------------------------------------------
def _feature_deltas(now: dict, before: dict, *, model_changed: bool) -> dict[str, float]:
    """Each feature's change of contribution (log-odds); after a model change, only features whose value changed
    and is known in both runs (the others moved with the model)."""
    if model_changed:
        return {
            f: now[f][0] - before[f][0] for f in now.keys() & before.keys() if not _same_value(now[f][1], before[f][1])
        }
    return {f: now.get(f, (0.0, None))[0] - before.get(f, (0.0, None))[0] for f in now.keys() | before.keys()}


def _same_value(a: object, b: object) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _concepts(deltas: dict[str, float], specs: dict[str, FeatureSpec]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for feature in sorted(deltas):
        concept = specs[feature].concept if feature in specs else feature
        grouped.setdefault(concept, []).append(feature)
    return grouped


def _apportion(parts: list[float], total: int) -> list[int]:
    """Whole numbers as close to `parts` as can be that sum to `total` (largest remainders first; ties in order)."""
    if not parts:
        return []
    shift = (total - sum(parts)) / len(parts)  # spread the gap first, so the rounding below has at most len() to add
    floors = [math.floor(p + shift) for p in parts]
    missing = total - sum(floors)
    order = sorted(range(len(parts)), key=lambda i: -(parts[i] + shift - floors[i]))
    for i in order[:missing]:
        floors[i] += 1
    return floors


def _points(points: int) -> str:
    return f"{points:+d} point" if abs(points) == 1 else f"{points:+d} points"


def _shown(value: object, spec: FeatureSpec | None) -> str:
    return format_value(value, spec) or "not known"


def _feature_words(feature: str, now: dict, before: dict, spec: FeatureSpec | None) -> str:
    """'Description: 0 -> 5' (or 'still 5', 'now 5' / 'was 5' where one run did not keep the value)."""
    description = spec.description if spec is not None else feature
    if feature in now and feature in before:
        a, b = before[feature][1], now[feature][1]
        values = f"still {_shown(b, spec)}" if _same_value(a, b) else f"{_shown(a, spec)} -> {_shown(b, spec)}"
    elif feature in now:
        values = f"now {_shown(now[feature][1], spec)}"
    else:
        values = f"was {_shown(before[feature][1], spec)}"
    return f"{description}: {values}"


def _lead_reasons(change: int, parts: list[tuple[str, float]], *, reasons: int = REASONS) -> list[tuple[str, int]]:
    """The `reasons` largest parts (by absolute value) and the remainder ('other changes'), in whole points that add
    up to `change`; parts that round to 0 are left out."""
    ranked = sorted(parts, key=lambda part: -abs(part[1]))[:reasons]
    rest = change - sum(points for _, points in ranked)
    whole = _apportion([points for _, points in ranked] + [rest], change)
    named = [(label, points) for (label, _), points in zip(ranked, whole, strict=False) if points != 0]
    return named + ([("other changes", whole[-1])] if whole[-1] != 0 else [])


def _concept_parts(
    deltas: dict[str, float], now: dict, before: dict, specs: dict[str, FeatureSpec], *, slope: float
) -> list[tuple[str, float]]:
    """(text, points) of each concept's part: its features' change of contribution times `slope`."""
    parts = []
    for members in _concepts(deltas, specs).values():
        total = sum(deltas[f] for f in members)
        if total == 0:
            continue
        # the headline: the member whose contribution moved most the concept's way
        headline = max(members, key=lambda f: (deltas[f] * np.sign(total), f in now and f in before))
        parts.append((_feature_words(headline, now, before, specs.get(headline)), slope * total))
    return parts


# -- every lead -----------------------------------------------------------------------------------------------------
def score_movement(
    current: pd.DataFrame,
    previous: pd.DataFrame,
    specs: dict[str, FeatureSpec],
    *,
    points_of_margin: Callable[[np.ndarray], np.ndarray],
    reasons: int = REASONS,
) -> pd.DataFrame:
    """`score_change` (Int64; missing for a lead with no previous run) and `change_reasons` (text; empty when the
    score did not move or a run stored no contributions) for each row of `current`, against the row of `previous`
    with the same `lead_id` (at most one per lead).

    Both frames have `lead_id`, `score`, `margin`, `model_name`, `model_version` and `top_contributions` (as
    `compact_contributions` writes it). `points_of_margin`: the current model's unrounded score of a margin."""
    before = previous.drop_duplicates("lead_id", keep="last").set_index("lead_id")
    matched = before.reindex(current["lead_id"].to_numpy())
    change = current["score"].to_numpy(dtype="float64") - matched["score"].to_numpy(dtype="float64")
    out = pd.DataFrame(
        {"score_change": pd.array(np.where(np.isnan(change), np.nan, change), dtype="Int64"), "change_reasons": ""},
        index=current.index,
    )
    out["change_reasons"] = out["change_reasons"].astype("string")
    model_changed = (_text(current["model_version"]) != _text(matched["model_version"])) | (
        _text(current["model_name"]) != _text(matched["model_name"])
    )
    m_now = current["margin"].to_numpy(dtype="float64")
    m_then = matched["margin"].to_numpy(dtype="float64")
    moved = np.flatnonzero(~np.isnan(change) & (change != 0) & np.isfinite(m_now))
    texts = out["change_reasons"].to_numpy(dtype=object)
    for i in moved:
        now = parse_contributions(current["top_contributions"].iat[i])
        then = parse_contributions(matched["top_contributions"].iat[i])
        if now is None or then is None:
            continue
        texts[i] = _reasons_text(
            now,
            then,
            specs,
            change=int(change[i]),
            margins=(m_then[i], m_now[i]),
            models=(_version(matched.iloc[i]), _version(current.iloc[i])) if model_changed[i] else None,
            points_of_margin=points_of_margin,
            reasons=reasons,
        )
    out["change_reasons"] = pd.array(texts, dtype="string")
    return out


def _text(column: pd.Series) -> np.ndarray:
    """Text values to compare (missing: empty text, never pandas' NA, which refuses to be compared)."""
    return column.astype("string").fillna("").to_numpy(dtype=object)


def _version(row: pd.Series) -> str:
    return f"v{row['model_version']}" if not _missing(row["model_version"]) else str(row["model_name"])


def _slope(points_of_margin: Callable, start: float, end: float) -> float:
    """Score points per unit of log-odds between two margins under the current model: the chord, or the tangent
    where the margins are one."""
    if abs(end - start) < _TINY:
        start, end = end - 1e-4, end + 1e-4
    ends = points_of_margin(np.array([start, end], dtype="float64"))
    return float((ends[1] - ends[0]) / (end - start))


def _reasons_text(
    now: dict,
    then: dict,
    specs: dict[str, FeatureSpec],
    *,
    change: int,
    margins: tuple[float, float],
    models: tuple[str, str] | None,
    points_of_margin: Callable,
    reasons: int,
) -> str:
    """One lead's change reasons, joined as the score's reasons are."""
    m_then, m_now = margins
    deltas = _feature_deltas(now, then, model_changed=models is not None)
    if models is None:  # one model: the chord between the two margins is exact
        parts = _concept_parts(deltas, now, then, specs, slope=_slope(points_of_margin, m_then, m_now))
    else:  # the new model's chord over the features' own change; what they leave is the model's
        slope = _slope(points_of_margin, m_now - sum(deltas.values()), m_now)
        parts = _concept_parts(deltas, now, then, specs, slope=slope)
        parts.append((f"new model {models[1]} (was {models[0]})", change - sum(points for _, points in parts)))
    return SEPARATOR.join(_said(label, points) for label, points in _lead_reasons(change, parts, reasons=reasons))


def _said(label: str, points: int) -> str:
    """'Description: 0 -> 5, +31 points'; 'new model v4 (was v3): -6 points'; 'other changes: +1 point'."""
    return f"{label}, {_points(points)}" if ": " in label else f"{label}: {_points(points)}"
