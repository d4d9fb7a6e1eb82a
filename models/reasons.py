"""Plain-language reasons from SHAP contributions, grouped by concept and filtered so that a seller can act on them.

Each reason states the lead's value and how leads like it converted in training, e.g. "Demo requests in the last
30 days: 2 - leads with 2 to 3 convert at 41 % (all leads 10 %)". The rules (tested on hand-made rows in
tests/test_models/test_reasons.py):

1. **One reason per concept.** Features measuring one idea share a `concept` in the registry (page views over 7,
   30 and 90 days; recency, active days, activity counts, trend and the engagement score; company size and revenue
   band). A concept's contribution is the sum of its features' SHAP values and orders the reasons, so the largest
   push comes first. Its text names one feature, the *headline*: among the features of the concept pushing the
   same way that may be cited, the most specific evidence - the one whose similar leads' conversion rate lies
   farthest from the average on the reason's side (the larger SHAP value on a tie).
2. **Similar leads, not medians** (`models.similar_leads`, from the training rows, each lead weighted once): a numeric
   feature's values are cut into bands at rounded quantiles (counts also at 1, 2, 3, 5, 10, ...: 0 gets a band of
   its own when zeros are common), each band merged with a neighbour until it holds MIN_BAND_ROWS rows; missing
   values and each category's levels seen on MIN_LEVEL_ROWS rows get their own rate. A reason is good news only
   when its band converts above the average rate, bad news only below it, as shown: inactivity that converts below
   average is never a plus, and a band of 0 or "not known" that converts above average is a plus stated as what it
   is ("Page views per visit: 0 - leads with 0 convert at 45 %"): the largest push is not hidden for being an
   absence.
3. **Declared directions read the right way**: a feature declared +1 (more never lowers the probability) is good
   news only above the typical (median) lead and bad news only at or below it; -1 mirrors this.
4. **Words, not codes**: a boolean reads as its statement or its `when_false` statement, never "...: no"; numbers in
   natural units and sensible precision ("about 120 employees", "3 days", "2.3", "0.022", "1,532").

A concept none of whose features may be cited is skipped and the next one taken. A reference without bands (a model
trained before them) quotes no rate and cites no absence as a plus. Exact SHAP values per feature are untouched by
these rules: `predict --contributions` writes them.
"""

from __future__ import annotations

import bisect

import numpy as np
import pandas as pd

from leadscore.features.spec import FeatureSpec
from leadscore.models.similar_leads import MIN_LEVEL_ROWS, reason_reference, similar_rates
from leadscore.models.wording import (
    _missing,
    _parts,
    _shown_rate,
    format_number,
    format_rate,
    format_value,
)

__all__ = [
    "MIN_LEVEL_ROWS",
    "SEPARATOR",
    "citable",
    "format_number",
    "format_rate",
    "format_value",
    "reason_reference",
    "reason_text",
    "similar_rates",
    "top_reasons",
]

SEPARATOR = " | "


# -- which features may be cited ----------------------------------------------------------------------------------
def _kind(values: pd.Series, spec: FeatureSpec | None) -> str:
    if spec is not None:
        return spec.kind
    return "numeric" if pd.api.types.is_numeric_dtype(values) else "categorical"


def citable(
    values: pd.Series,
    spec: FeatureSpec | None,
    reference: dict | None,
    *,
    sign: int,
    direction: int = 0,
    rates: np.ndarray | None = None,
    by_rate: bool = True,
) -> np.ndarray:
    """Per row: may this feature's value be cited as a reason of this sign (+1 positive, -1 negative)? `rates`: the
    rows' `similar_rates`, when already computed; `by_rate=False` leaves out the rule of the similar leads' rate
    (what the largest push needs: rule 2 of the module's docstring)."""
    reference = reference or {}
    known = np.array(values.notna(), dtype=bool)  # a writable copy (pandas hands out read-only views)
    ok = np.ones(len(values), dtype=bool)
    has_rates = "cuts" in reference or "rates" in reference
    if has_rates and by_rate:  # good news only above the average rate, bad news only below it, as shown
        rate = similar_rates(values, reference) if rates is None else rates
        agrees = _agrees(rate, reference["overall_rate"], sign)
        ok &= agrees if sign > 0 else (np.isnan(rate) | agrees)
    elif sign > 0 and not has_rates:  # an older reference: without the rate of leads like it, no absence is good news
        ok &= known
        if _kind(values, spec) != "categorical" and (spec is None or spec.unit != "days"):
            ok &= pd.to_numeric(values, errors="coerce").astype("float64").to_numpy() != 0
    typical = reference.get("typical")
    if _kind(values, spec) == "boolean":
        typical = 0.5  # true is the good side of +1 however common it is (most leads use a business e-mail)
    if direction and typical is not None and _kind(values, spec) != "categorical":
        numbers = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
        better = numbers > typical if direction > 0 else numbers < typical
        # good news needs a value on the good side of the typical lead (or, quoted with its rate, a missing one);
        # bad news never cites one there
        ok &= (better | (~known & has_rates)) if sign > 0 else ~better
    return ok


def _agrees(rates: np.ndarray, average: float, sign: int) -> np.ndarray:
    """Rates above the average (sign +1) or below it (-1), as shown; False where no rate is quoted."""
    overall, shown = _shown_rate(np.array([average]))[0], _shown_rate(rates)
    return shown > overall if sign > 0 else shown < overall


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


def _headlines(signed: np.ndarray, key: np.ndarray, concepts: dict[str, list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Per row and concept (in name order): the concept's push (0 when it may not be cited) and its headline, the
    member with the largest `key` (-inf: may not be cited) among those pushing this way."""
    rows = np.arange(len(signed))
    strength = np.zeros((len(signed), len(concepts)))
    headline = np.full((len(signed), len(concepts)), -1)
    for c, concept in enumerate(sorted(concepts)):
        members = np.asarray(concepts[concept])
        candidate = np.where(signed[:, members] > 0, key[:, members], -np.inf)
        best = candidate.argmax(axis=1)
        usable = np.isfinite(candidate[rows, best]) & (signed[:, members].sum(axis=1) > 0)
        strength[:, c] = np.where(usable, signed[:, members].sum(axis=1), 0.0)
        headline[:, c] = np.where(usable, members[best], -1)
    return strength, headline


def _side(
    matrix: np.ndarray,
    allowed: np.ndarray,
    concepts: dict[str, list[int]],
    sign: int,
    k: int,
    telling: np.ndarray | None = None,
    largest: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Per row, the headline feature (-1: none) of the k concepts pushing hardest in direction `sign`. `telling`:
    how far each row's similar-lead rate lies from the average on this side (NaN: no rate), which picks the
    headline; without it, the member pushing hardest does. `largest`: what the first reason may cite (a looser
    rule than `allowed`), so that the concept pushing hardest is never hidden."""
    signed = matrix * sign
    if telling is None:
        telling = np.full(matrix.shape, np.nan)
    # most telling rate first, then the larger push; members without a rate after every member with one
    preference = np.where(np.isnan(telling), -2.0, telling) + 1e-9 * np.tanh(signed)
    strength, headline = _headlines(signed, np.where(allowed, preference, -np.inf), concepts)
    rows = np.arange(len(matrix))
    if largest is None:
        # concepts in name order, then stably by strength: ties go by name, so reruns give the same text
        picks = _top_k(strength, np.argsort(-strength, axis=1, kind="stable"), k)
        return [np.where(p >= 0, headline[rows, np.clip(p, 0, None)], -1) for p in picks]
    # the first reason: the hardest push of all, worded by a fully citable member when it has one
    loose_key = np.where(allowed, preference, np.where(largest, -3.0 + 1e-9 * np.tanh(signed), -np.inf))
    first_strength, first_headline = _headlines(signed, loose_key, concepts)
    first = np.argmax(first_strength, axis=1)  # the first maximum: ties go by name
    has_first = first_strength[rows, first] > 0
    strength[rows[has_first], first[has_first]] = 0.0  # one reason per concept
    rest = _top_k(strength, np.argsort(-strength, axis=1, kind="stable"), k - 1) if k > 1 else []
    picks = [np.where(has_first, first_headline[rows, first], -1)]
    picks += [np.where(p >= 0, headline[rows, np.clip(p, 0, None)], -1) for p in rest]
    return picks


def top_reasons(
    contributions: pd.DataFrame,
    values: pd.DataFrame,
    specs: dict[str, FeatureSpec],
    *,
    k: int = 3,
    reference: dict | None = None,
    directions: dict[str, int] | None = None,
    subject: str = "lead",
) -> pd.DataFrame:
    """Per row, the k concepts pushing the score up most and the k pushing it down most, as text, largest first,
    under the rules in this module's docstring. `directions` defaults to the features' declared ones; `subject`
    names what is scored ("leads like this convert at ...", or "accounts ...")."""
    features = [c for c in contributions.columns if c != "base_value"]
    matrix = contributions[features].to_numpy(dtype="float64")
    reference = reference or {}
    if directions is None:
        directions = {n: specs[n].direction for n in features if n in specs}
    concepts = _concepts(features, specs)
    rates = [similar_rates(values[n], reference.get(n)) for n in features]
    largest = [
        citable(values[n], specs.get(n), reference.get(n), sign=1, direction=directions.get(n, 0), by_rate=False)
        for n in features
    ]
    allowed, telling = {}, {}
    for sign in (1, -1):
        columns = [
            citable(
                values[n], specs.get(n), reference.get(n), sign=sign, direction=directions.get(n, 0), rates=rates[j]
            )
            for j, n in enumerate(features)
        ]
        allowed[sign] = np.column_stack(columns) if features else np.zeros((len(matrix), 0), dtype=bool)
        overall = [reference.get(n, {}).get("overall_rate", np.nan) for n in features]
        telling[sign] = (np.column_stack(rates) - np.asarray(overall)) * sign if features else None
    columns = [values[name] for name in features]
    words = {
        sign: _Wording(columns, [_feature_wording(n, specs.get(n), reference.get(n), subject, sign) for n in features])
        for sign in (1, -1)
    }
    loose = np.column_stack(largest) if features else None
    return pd.DataFrame(
        {
            "reasons_positive": _joined_texts(_side(matrix, allowed[1], concepts, 1, k, telling[1], loose), words[1]),
            "reasons_negative": _joined_texts(_side(matrix, allowed[-1], concepts, -1, k, telling[-1]), words[-1]),
        },
        index=contributions.index,
    )


# -- the words of one reason ------------------------------------------------------------------------------------------
def _band_label(band: int, reference: dict, spec: FeatureSpec | None) -> str:
    """The band's values as said: '0', '2 to 3', '10 or more', 'less than 1 day', '1.2x to 1.5x', 'yes'."""
    cuts = reference["cuts"]
    if spec is not None and spec.kind == "boolean":
        return ""  # a boolean's band is its statement: "leads like this"
    discrete = bool(reference.get("integer")) or (spec is not None and spec.unit == "days")

    def said(number: float) -> str:
        text, unit = _parts(number, spec, exact=True)
        return text + unit

    def number(value: float) -> str:
        return _parts(value, spec, exact=True)[0]

    last = len(cuts)
    if not cuts:  # too few rows to cut: one band of every known value
        return "a known value"
    if band == last:
        return f"{said(cuts[-1])} or more"
    if discrete:
        low = reference.get("lowest", cuts[0] - 1) if band == 0 else cuts[band - 1]
        high = cuts[band] - 1
        low_text, high_text = said(low), said(high)
        if low_text == high_text:
            return high_text
        return f"{high_text} or less" if band == 0 else f"{number(low)} to {high_text}"
    if band == 0:
        return said(reference["lowest"]) if reference.get("first_single") else f"less than {said(cuts[0])}"
    return f"{number(cuts[band - 1])} to {said(cuts[band])}"


def reason_text(
    feature: str, value: object, spec: FeatureSpec | None, reference: dict | None = None, *, subject: str = "lead"
) -> str:
    """One reason: the value in words and, when the reference quotes one, how leads like it convert."""
    return _feature_wording(feature, spec, reference, subject)(value)


def _statement(feature: str, value: object, spec: FeatureSpec | None) -> str:
    """'Description: value' - a boolean as its own statement, true or false; a missing value as 'not known'."""
    description = spec.description if spec is not None else feature
    shown = format_value(value, spec)
    if shown is None:
        return f"{description}: not known"
    if spec is not None and spec.kind == "boolean":
        if shown == "yes":
            return description
        return spec.when_false or f"{description}: no"
    return f"{description}: {shown}"


def _group_of(value: object, reference: dict) -> object:
    """Which group of similar leads a value belongs to: 'missing', a band's index or a category's level (None: a
    value that is no number where bands are cut)."""
    if _missing(value):
        return "missing"
    if "cuts" not in reference:
        return str(value)
    try:
        return bisect.bisect_right(reference["cuts"], float(value))
    except (TypeError, ValueError):
        return None


def _who(group: object, spec: FeatureSpec | None, reference: dict, subject: str) -> tuple[str, float | None]:
    """('leads with 2 to 3', their rate), ('leads like this', rate) or ('', None) when no rate is quoted."""
    plural = f"{subject}s"
    if group == "missing":
        return f"{plural} where it is not known", reference.get("missing_rate")
    if "cuts" not in reference:  # a category's level
        return f"{plural} like this", reference.get("rates", {}).get(group)
    if group is None or not reference["rates"]:
        return "", None
    rate = reference["rates"][group]
    if spec is not None and spec.kind == "boolean":
        return f"{plural} like this", rate
    return f"{plural} with {_band_label(group, reference, spec)}", rate


def _agrees_one(rate: float, average: float, sign: int) -> bool:
    """`_agrees` for one rate, without arrays (it runs once per group of similar leads a reason quotes)."""
    return bool(_agrees(np.array([rate]), average, sign)[0])


def _feature_wording(feature: str, spec: FeatureSpec | None, reference: dict | None, subject: str, sign: int = 0):
    """The reason text of one feature as a function of its value: 'Description: value - leads with 2 to 3 convert
    at 41 % (all leads 10 %)'. The comparison is left out when no rate is quoted for the value, and in a reason of
    `sign` +1 (-1) when the rate is not above (below) the average: the largest push cited on the model's word. The
    comparison depends on the value's group only: it is worded once per group."""
    reference = reference or {}
    overall = reference.get("overall_rate")
    average = f" (all {subject}s {format_rate(overall)})" if overall is not None else ""
    comparisons: dict = {}

    def comparison(group: object) -> str:
        if group not in comparisons:
            who, rate = _who(group, spec, reference, subject) if overall is not None else ("", None)
            quoted = rate is not None and (not sign or _agrees_one(rate, overall, sign))
            comparisons[group] = f" - {who} convert at {format_rate(rate)}{average}" if quoted else ""
        return comparisons[group]

    def text(value: object) -> str:
        return _statement(feature, value, spec) + comparison(_group_of(value, reference))

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
