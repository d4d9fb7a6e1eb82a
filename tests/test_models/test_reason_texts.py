"""The vectorised reason texts equal the row-by-row wording they replaced, on a few hundred varied rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.features.registry import all_features
from leadscore.models.reasons import (
    SEPARATOR,
    _concepts,
    _feature_wording,
    _missing,
    _side,
    citable,
    reason_reference,
    similar_rates,
    top_reasons,
)

SPECS = all_features()
NUMERIC = [
    "events_page_view_count_7d",
    "events_page_view_count_30d",
    "events_page_view_count_90d",
    "events_days_since_last",
    "events_trend_7d_vs_21d",
    "engagement_decayed_score",
    "lead_age_days",
    "lead_profile_completeness",
    "account_employee_count_log",
    "history_account_won_deals",
    "history_days_since_account_last_win",
    "product_logins_14d",
]
BOOLEAN = ["lead_email_is_business", "product_trial_started"]
CATEGORICAL = ["lead_seniority", "lead_country", "account_revenue_band", "account_industry"]


def per_row_reasons(contributions, values, specs, *, k=3, reference=None):
    """The wording one row at a time (the reference for the vectorised texts): each (side, feature, value) worded once
    through a cache."""
    features = [c for c in contributions.columns if c != "base_value"]
    matrix = contributions[features].to_numpy(dtype="float64")
    reference = reference or {}
    directions = {n: specs[n].direction for n in features if n in specs}
    concepts = _concepts(features, specs)

    def allowed(sign, **rule):
        return np.column_stack(
            [
                citable(values[n], specs.get(n), reference.get(n), sign=sign, direction=directions.get(n, 0), **rule)
                for n in features
            ]
        )

    rates = np.column_stack([similar_rates(values[n], reference.get(n)) for n in features])
    overall = np.asarray([reference.get(n, {}).get("overall_rate", np.nan) for n in features])
    columns = [values[name].to_numpy(dtype=object) for name in features]
    cache: dict = {}

    def text(sign, j, value):
        key = (sign, j, None if _missing(value) else value)
        if key not in cache:
            f = features[j]
            cache[key] = _feature_wording(f, specs.get(f), reference.get(f), "lead", sign)(value)
        return cache[key]

    def texts(sign, picks):
        return [
            SEPARATOR.join(text(sign, j, columns[j][i]) for j in (p[i] for p in picks) if j >= 0)
            for i in range(len(matrix))
        ]

    positive = _side(matrix, allowed(1), concepts, 1, k, rates - overall, allowed(1, by_rate=False))
    return pd.DataFrame(
        {
            "reasons_positive": texts(1, positive),
            "reasons_negative": texts(-1, _side(matrix, allowed(-1), concepts, -1, k, overall - rates)),
        },
        index=contributions.index,
    )


def varied_rows(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Values of every kind (counts with zeros, days, shares, log sizes, flags, text and categorical levels, missing
    values) and contributions of both signs with exact zeros and ties."""
    rng = np.random.default_rng(seed)
    values = {}
    for name in NUMERIC:
        column = np.round(rng.exponential(3.0, n), int(rng.integers(0, 3)))
        column[rng.random(n) < 0.3] = 0.0
        column[rng.random(n) < 0.1] = np.nan
        values[name] = column
    for name in BOOLEAN:
        values[name] = np.where(rng.random(n) < 0.1, np.nan, (rng.random(n) < 0.5).astype(float))
    levels = ["vp", "director", "manager", "individual", "c_level"]
    for i, name in enumerate(CATEGORICAL):
        text = pd.Series(rng.choice(levels, n), dtype="string").mask(rng.random(n) < 0.15)
        values[name] = text.astype("category") if i % 2 else text
    frame = pd.DataFrame(values)
    contributions = pd.DataFrame(np.round(rng.normal(0, 0.3, (n, frame.shape[1])), 2), columns=frame.columns)
    contributions = contributions.mask(rng.random(contributions.shape) < 0.2, 0.0)
    converted = (rng.random(n) < 0.3).astype(float)
    return contributions.assign(base_value=-2.0), frame, converted


def test_vectorised_texts_equal_the_per_row_wording():
    contributions, values, converted = varied_rows(400, seed=3)
    reference = reason_reference(values, converted, categorical=CATEGORICAL)
    for ref in (None, reference):
        for k in (1, 3):
            expected = per_row_reasons(contributions, values, SPECS, k=k, reference=ref)
            got = top_reasons(contributions, values, SPECS, k=k, reference=ref)
            pd.testing.assert_frame_equal(got.astype(object), expected.astype(object))
            assert (expected["reasons_positive"] != "").mean() > 0.5  # the rows do have reasons to compare
            assert expected["reasons_negative"].str.contains(" | ", regex=False).any() == (k > 1)
            assert expected["reasons_negative"].str.contains("not known").any()
            assert expected["reasons_positive"].str.contains(" convert at ").any() == (ref is not None)


def test_vectorised_texts_keep_the_index_and_handle_no_rows():
    contributions, values, _ = varied_rows(5, seed=4)
    contributions.index = values.index = [10, 11, 12, 13, 14]
    assert top_reasons(contributions, values, SPECS).index.tolist() == [10, 11, 12, 13, 14]
    empty = top_reasons(contributions.iloc[:0], values.iloc[:0], SPECS)
    assert len(empty) == 0 and list(empty.columns) == ["reasons_positive", "reasons_negative"]
