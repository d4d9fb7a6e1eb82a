"""Plain-language reasons from SHAP contributions, grouped by concept and filtered so that a seller can act on them.

The rules (each tested on hand-made rows in tests/test_models/test_reasons.py):

1. **One reason per concept.** Features measuring one idea share a `concept` in the registry (page views over 7,
   30 and 90 days; the engagement score with recent activity counts; company size and revenue band). A concept's
   contribution is the sum of its features' SHAP values; its text names one of them, the *headline*: the feature
   of the concept pushing hardest the same way that may be cited under rules 2 and 3.
2. **A positive reason never cites an absence**: not a missing value ("not known"), not a count, share or flag of
   0 ("no"). Recency in days is not a count: "last activity: less than 1 day" is a presence.
3. **Declared directions read the right way** (with the training reference, see `reason_reference`): for a
   feature declared +1 (more never lowers the probability) a positive reason needs a value above the typical lead
   and a negative one a value neither above the typical lead nor at or above the typical converting lead ("e-mail
   clicks: 0, typical converting lead: 0" is no reason); -1 mirrors this. Without a reference (older models) only
   rule 2 holds.
4. **Text with a reference and natural units**: "Pricing-page views in the last 30 days: 4, typical converting
   lead: 2"; "Company size: about 120 employees, typical converting lead: about 300 employees"; for a category
   "Seniority of the lead's role: vp, leads like this convert at 4.1 % (all leads 2.0 %)". A category is cited as
   good news only when it converts above the average rate, as bad news only below it (as shown, to 0.1 %).

A concept whose features may not be cited is skipped and the next one is taken. Exact SHAP values per feature are
untouched by these rules: `predict --contributions` writes them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from leadscore.features.spec import FeatureSpec

SEPARATOR = " | "
MIN_LEVEL_ROWS = 30  # a category's conversion rate is quoted only when this many training rows had it


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)  # NaN only


def format_value(value: object, spec: FeatureSpec | None) -> str | None:
    """The value as a person would say it, or None when it is missing."""
    if _missing(value):
        return None
    if spec is None or spec.kind == "categorical":
        return str(value)
    number = float(value)
    if spec.kind == "boolean":
        return "yes" if number >= 0.5 else "no"
    unit = spec.unit
    if spec.at_most is not None and number >= spec.at_most:
        return f"{format_value(spec.at_most, replace(spec, at_most=None))} or more"
    if unit == "days":
        return "less than 1 day" if number < 1 else f"{number:.0f} day{'s' if round(number) != 1 else ''}"
    if unit == "%":
        return f"{number:.0f} %"
    if unit == "log10 employees":
        return f"about {_round_employees(10**number - 1):,.0f} employees"
    if unit == "x":
        return f"{number:.1f}x"
    if number.is_integer():
        return f"{number:,.0f}"
    return f"{number:,.1f}"


def _round_employees(count: float) -> float:
    """Two significant figures: 'about 124 employees' claims more precision than a CRM field holds."""
    if count < 100:
        return round(count)
    digits = int(np.floor(np.log10(count))) - 1
    return round(count, -digits)


def reference_text(value: object, spec: FeatureSpec | None, reference: dict | None) -> str:
    """', typical converting lead: 2' (numbers) or ', leads like this convert at 4.1 % (all leads 2.0 %)'."""
    if not reference or _missing(value):
        return ""
    if "converting" in reference and reference["converting"] is not None:
        shown = format_value(reference["converting"], spec)
        return f", typical converting lead: {shown}" if shown is not None else ""
    rate = reference.get("rates", {}).get(str(value))
    if rate is None:
        return ""
    return f", leads like this convert at {rate * 100:.1f} % (all leads {reference['overall_rate'] * 100:.1f} %)"


def reason_text(feature: str, value: object, spec: FeatureSpec | None, reference: dict | None = None) -> str:
    description = spec.description if spec is not None else feature
    shown = format_value(value, spec)
    if shown is None:
        return f"{description}: not known"
    return f"{description}: {shown}{reference_text(value, spec, reference)}"


# -- the reference: what a typical lead and a typical converting lead look like ---------------------------------
def reason_reference(X: pd.DataFrame, converted, *, categorical: list[str]) -> dict:
    """Per feature, from training rows: numeric medians of all leads (`typical`) and of converted leads
    (`converting`); categorical conversion rates per level seen at least MIN_LEVEL_ROWS times."""
    y = np.asarray(converted, dtype="float64")
    overall = float(y.mean()) if len(y) else 0.0
    out: dict = {}
    for column in X.columns:
        if column in categorical:
            text = X[column].astype("string")
            table = pd.DataFrame({"level": text, "y": y}).dropna().groupby("level")["y"].agg(["mean", "size"])
            rates = {str(k): float(r["mean"]) for k, r in table.iterrows() if r["size"] >= MIN_LEVEL_ROWS}
            out[column] = {"rates": rates, "overall_rate": overall}
        else:
            values = pd.to_numeric(X[column], errors="coerce").astype("float64").to_numpy()
            known = ~np.isnan(values)
            converting = values[known & (y == 1)]
            out[column] = {
                "typical": float(np.median(values[known])) if known.any() else None,
                "converting": float(np.median(converting)) if len(converting) else None,
            }
    return out


# -- which features may be cited ----------------------------------------------------------------------------------
def citable(
    values: pd.Series, spec: FeatureSpec | None, reference: dict | None, *, sign: int, direction: int = 0
) -> np.ndarray:
    """Per row: may this feature's value be cited as a reason of this sign (+1 positive, -1 negative)?"""
    kind = spec.kind if spec is not None else ("numeric" if pd.api.types.is_numeric_dtype(values) else "categorical")
    known = np.array(values.notna(), dtype=bool)  # a writable copy (pandas hands out read-only views)
    if kind == "categorical":
        ok = known.copy() if sign > 0 else np.ones(len(values), dtype=bool)
        rates = (reference or {}).get("rates")
        if rates:  # good news only above the average rate, bad news only below it, as shown (to 0.1 %)
            rate = np.round(_level_rates(values, rates), 3)
            overall = round(reference["overall_rate"], 3)
            ok &= np.isnan(rate) | (rate > overall if sign > 0 else rate < overall)
        return ok
    numbers = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
    ok = np.ones(len(values), dtype=bool)
    if sign > 0:
        ok &= known
        if spec is None or spec.unit != "days":  # a count, share or flag of 0 is an absence
            ok &= numbers != 0
    typical = (reference or {}).get("typical")
    if direction and typical is not None:
        above, below = numbers > typical, numbers < typical
        if sign > 0:
            ok &= above if direction > 0 else below
        else:  # never call activity beyond the typical lead bad (nor a missing value good or bad by direction)
            ok &= ~above if direction > 0 else ~below
    converting = (reference or {}).get("converting")
    if direction and converting is not None and sign < 0:  # bad news only when short of the converting lead
        ok &= ~known | (numbers < converting if direction > 0 else numbers > converting)
    return ok


def _level_rates(values: pd.Series, rates: dict[str, float]) -> np.ndarray:
    """Each row's level conversion rate (NaN when not quoted), looked up once per distinct level."""
    if values.dtype == object:  # mixed objects: 1 and True would count as one level, yet read "1" and "True"
        return values.astype("string").map(rates).astype("float64").to_numpy()
    codes, distinct = pd.factorize(values, use_na_sentinel=True)
    per_level = pd.Series(distinct).astype("string").map(rates).astype("float64").to_numpy()
    return np.append(per_level, np.nan)[codes]  # code -1 (missing) reads the appended NaN


# -- the reasons ------------------------------------------------------------------------------------------------------
def _top_k(matrix: np.ndarray, order: np.ndarray, k: int) -> list[np.ndarray]:
    """Column positions (-1: none) of each row's k largest positive entries, in `order`."""
    ordered = np.take_along_axis(matrix, order, axis=1)
    wanted = ordered > 0
    rank = np.cumsum(wanted, axis=1)
    picks = []
    for j in range(1, k + 1):
        hit = wanted & (rank == j)
        found = hit.any(axis=1)
        position = np.take_along_axis(order, hit.argmax(axis=1)[:, None], axis=1)[:, 0]
        picks.append(np.where(found, position, -1))
    return picks


def _concepts(features: list[str], specs: dict[str, FeatureSpec]) -> dict[str, list[int]]:
    concepts: dict[str, list[int]] = {}
    for j, name in enumerate(features):
        concept = specs[name].concept if name in specs else name
        concepts.setdefault(concept, []).append(j)
    return concepts


def _side(
    matrix: np.ndarray, allowed: np.ndarray, concepts: dict[str, list[int]], sign: int, k: int
) -> list[np.ndarray]:
    """Per row, the headline feature (-1: none) of the k concepts pushing hardest in direction `sign`."""
    signed = matrix * sign
    names = sorted(concepts)
    strength = np.zeros((len(matrix), len(names)))
    headline = np.full((len(matrix), len(names)), -1)
    for c, concept in enumerate(names):
        members = np.asarray(concepts[concept])
        candidate = np.where(allowed[:, members] & (signed[:, members] > 0), signed[:, members], -np.inf)
        best = candidate.argmax(axis=1)
        found = np.isfinite(candidate[np.arange(len(matrix)), best])
        total = signed[:, members].sum(axis=1)
        usable = found & (total > 0)
        strength[:, c] = np.where(usable, total, 0.0)
        headline[:, c] = np.where(usable, members[best], -1)
    # concepts in name order, then stably by strength: ties go by name, so reruns give the same text
    order = np.argsort(-strength, axis=1, kind="stable")
    picks = _top_k(strength, order, k)
    rows = np.arange(len(matrix))
    return [np.where(p >= 0, headline[rows, np.clip(p, 0, None)], -1) for p in picks]


def top_reasons(
    contributions: pd.DataFrame,
    values: pd.DataFrame,
    specs: dict[str, FeatureSpec],
    *,
    k: int = 3,
    reference: dict | None = None,
    directions: dict[str, int] | None = None,
) -> pd.DataFrame:
    """Per row, the k concepts pushing the score up most and the k pushing it down most, as text, largest first,
    under the rules in this module's docstring. `directions` defaults to the features' declared ones."""
    features = [c for c in contributions.columns if c != "base_value"]
    matrix = contributions[features].to_numpy(dtype="float64")
    reference = reference or {}
    if directions is None:
        directions = {n: specs[n].direction for n in features if n in specs}
    concepts = _concepts(features, specs)
    allowed = {
        sign: np.column_stack(
            [
                citable(values[n], specs.get(n), reference.get(n), sign=sign, direction=directions.get(n, 0))
                for n in features
            ]
        )
        if features
        else np.zeros((len(matrix), 0), dtype=bool)
        for sign in (1, -1)
    }
    wording = _Wording(
        [values[name] for name in features], [_feature_wording(n, specs.get(n), reference.get(n)) for n in features]
    )
    return pd.DataFrame(
        {
            "reasons_positive": _joined_texts(_side(matrix, allowed[1], concepts, 1, k), wording),
            "reasons_negative": _joined_texts(_side(matrix, allowed[-1], concepts, -1, k), wording),
        },
        index=contributions.index,
    )


def _feature_wording(feature: str, spec: FeatureSpec | None, reference: dict | None):
    """`reason_text` for one feature as a function of the value, with the parts that do not depend on the value (the
    description, a numeric feature's typical converting lead) worded once."""
    if not (reference and "converting" in reference):  # categorical levels quote their own rate
        return lambda value: reason_text(feature, value, spec, reference)
    description = spec.description if spec is not None else feature
    converting = format_value(reference["converting"], spec) if reference["converting"] is not None else None
    suffix = f", typical converting lead: {converting}" if converting is not None else ""

    def text(value: object) -> str:
        shown = format_value(value, spec)
        return f"{description}: not known" if shown is None else f"{description}: {shown}{suffix}"

    return text


class _Wording:
    """The reason text of feature `j` at given rows: each distinct value of a feature in the frame is worded once
    (`texts[j](value)`, value None when missing), when a row first cites it."""

    def __init__(self, columns: list[pd.Series], texts: list) -> None:
        self.columns, self.texts = columns, texts
        self.factorized: dict[int, tuple[np.ndarray, object, np.ndarray, np.ndarray]] = {}

    def at(self, j: int, rows: np.ndarray) -> np.ndarray:
        if j not in self.factorized:
            codes, distinct = pd.factorize(self.columns[j], use_na_sentinel=True)
            distinct = list(distinct)  # a list's items are read ten times faster than an Index's
            # one slot per distinct value and a last one for missing values (code -1 reads it)
            slots = len(distinct) + 1
            self.factorized[j] = (codes, distinct, np.empty(slots, dtype=object), np.zeros(slots, dtype=bool))
        codes, distinct, words, worded = self.factorized[j]
        wanted = codes[rows]
        for code in np.unique(wanted[~worded[wanted]]):
            words[code] = self.texts[j](distinct[code] if code >= 0 else None)
            worded[code] = True
        return words[wanted]


def _joined_texts(picks: list[np.ndarray], wording: _Wording) -> np.ndarray:
    """Per row, the texts of its picked features (-1: none) joined by SEPARATOR, in pick order: built one (pick,
    feature) at a time and concatenated as arrays rather than row by row."""
    n = len(picks[0]) if picks else 0
    out = np.full(n, "", dtype=object)
    started = np.zeros(n, dtype=bool)
    for pick in picks:
        part = np.empty(n, dtype=object)
        has = pick >= 0
        for j in np.unique(pick[has]):
            rows = np.flatnonzero(pick == j)
            part[rows] = wording.at(int(j), rows)
        more, first = has & started, has & ~started
        out[more] = out[more] + SEPARATOR + part[more]
        out[first] = part[first]
        started |= has
    return out
