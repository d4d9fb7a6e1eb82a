"""Score movement (issue 31): a lead's change between two runs split into the parts of its exact contributions.

Hand-made runs under a model whose probability is the logistic of the margin and whose base rate is 1/2, so one unit
of log-odds is worth exactly 10 / ln 2 = 14.43 points and every expected figure below can be worked out by hand.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.features.registry import all_features
from leadscore.models.movement import _apportion, compact_contributions, parse_contributions, score_movement

SPECS = all_features()
PER_LOG_ODDS = 10 / math.log(2)
PRICING_7D, PRICING_30D = "events_pricing_page_view_count_7d", "events_pricing_page_view_count_30d"
RECENCY, SENIORITY, DEMOS = "events_days_since_last", "lead_seniority", "events_demo_request_count_30d"


def points_of_margin(margin: np.ndarray) -> np.ndarray:
    """The unrounded score of a margin when p = logistic(margin) and the base rate is 1/2: 50 + 10 log2(odds)."""
    return 50 + PER_LOG_ODDS * np.asarray(margin, dtype="float64")


def run(lead: str, version: str, contributions: dict[str, tuple[float, object]] | None, *, base: float = 0.0):
    """One lead's row of a run: its margin is its contributions plus `base`, its score that margin's, rounded down."""
    margin = base + sum(c for c, _ in (contributions or {}).values())
    return {
        "lead_id": lead,
        "score": int(math.floor(points_of_margin(margin))),
        "margin": margin,
        "model_name": "leadscore-conversion",
        "model_version": version,
        "top_contributions": None
        if contributions is None
        else json.dumps([[f, c, v] for f, (c, v) in contributions.items()]),
    }


def movement(now: list[dict], before: list[dict]) -> pd.DataFrame:
    return score_movement(pd.DataFrame(now), pd.DataFrame(before), SPECS, points_of_margin=points_of_margin)


def test_the_two_largest_parts_with_their_signs_add_up_to_the_change():
    before = run("L1", "3", {PRICING_7D: (-0.1, 0.0), RECENCY: (0.5, 2.0), SENIORITY: (0.3, "VP")})
    now = run("L1", "3", {PRICING_7D: (2.0, 5.0), RECENCY: (-0.3, 20.0), SENIORITY: (0.3, "VP")})
    out = movement([now], [before])
    # margins 0.7 -> 2.0: scores 60 -> 78 (60.10 and 78.86 rounded down); pricing +2.1 x 14.43 = +30.30, recency
    # -0.8 x 14.43 = -11.54, seniority 0; the 0.76 lost to rounding down is the remainder
    assert out["score_change"].tolist() == [18]
    assert out["change_reasons"].tolist() == [
        "Pricing-page views in the last 7 days: 0 -> 5, +30 points | Days since the lead's last activity: "
        "2 days -> 20 days, -11 points | other changes: -1 point"
    ]


def test_only_the_two_largest_are_named_and_a_concept_is_one_reason():
    before = run("L1", "3", {PRICING_7D: (0.0, 0.0), PRICING_30D: (0.1, 1.0), DEMOS: (0.0, 0.0), RECENCY: (0.2, 3.0)})
    now = run("L1", "3", {PRICING_7D: (0.4, 2.0), PRICING_30D: (0.5, 3.0), DEMOS: (1.0, 1.0), RECENCY: (0.0, 9.0)})
    out = movement([now], [before])
    # pricing (7 and 30 days: one concept) +0.8 = 11.54, its headline the member that moved most (30 days: +0.4,
    # 7 days +0.4 too: the tie goes to the first by name); demos +1.0 = 14.43; recency -0.2 = -2.89 is not named
    assert out["score_change"].tolist() == [23]  # 54 -> 77 (margins 0.3 -> 1.9: 54.33, 77.41)
    assert out["change_reasons"].tolist() == [
        "Demo requests in the last 30 days: 0 -> 1, +14 points | Pricing-page views in the last 30 days: 1 -> 3, "
        "+12 points | other changes: -3 points"
    ]


def test_a_new_model_is_a_reason_of_its_own_and_unchanged_values_move_with_it():
    before = run("L1", "3", {PRICING_7D: (0.2, 1.0), SENIORITY: (0.3, "VP")})
    now = run("L1", "4", {PRICING_7D: (1.0, 3.0), SENIORITY: (0.9, "VP")}, base=-0.1)
    out = movement([now], [before])
    # 57 -> 75 (margins 0.5 -> 1.8: 57.21, 75.97); pricing's value changed: +0.8 x 14.43 = +11.54; seniority kept
    # its value, so its +0.6 and the base value's -0.1 are the new model's: 18 - 11.54 = +6.46
    assert out["score_change"].tolist() == [18]
    assert out["change_reasons"].tolist() == [
        "Pricing-page views in the last 7 days: 1 -> 3, +12 points | new model v4 (was v3): +6 points"
    ]


def test_leads_never_scored_unmoved_or_without_stored_contributions():
    before = [
        run("moved", "3", {DEMOS: (0.0, 0.0)}),
        run("still", "3", {DEMOS: (0.5, 1.0)}),
        run("old", "3", None) | {"margin": np.nan},  # a row of a history written before contributions were kept
    ]
    now = [
        run("moved", "3", {DEMOS: (1.0, 1.0)}),
        run("still", "3", {DEMOS: (0.5, 1.0)}),
        run("old", "3", {DEMOS: (1.0, 1.0)}) | {"score": 64},
        run("new", "3", {DEMOS: (1.0, 1.0)}),
    ]
    before[2]["score"] = 50
    out = movement(now, before)
    assert out["score_change"].tolist() == [14, 0, 14, pd.NA]
    assert out["change_reasons"].tolist() == ["Demo requests in the last 30 days: 0 -> 1, +14 points", "", "", ""]


def test_a_feature_one_run_did_not_keep_counts_as_zero_there_and_says_so():
    before = run("L1", "3", {RECENCY: (0.3, 2.0)})
    now = run("L1", "3", {DEMOS: (1.5, 2.0)})
    out = movement([now], [before])
    # 54 -> 71: +21.64 and -4.33 (the remainder, -0.31, rounds to nothing) in whole points adding up to 17
    assert out["score_change"].tolist() == [17]
    assert out["change_reasons"].tolist() == [
        "Demo requests in the last 30 days: now 2, +21 points | Days since the lead's last activity: was 2 days, "
        "-4 points"
    ]


def test_compact_contributions_keeps_the_largest_by_absolute_value_with_their_values():
    contributions = pd.DataFrame({DEMOS: [0.5, 0.0], RECENCY: [-0.9, 0.1], SENIORITY: [0.1, 0.0], "base_value": -2})
    values = pd.DataFrame(
        {DEMOS: [1, 0], RECENCY: [np.nan, 4.5], SENIORITY: pd.Series(["VP", "Manager"], dtype="category")}
    )
    kept = compact_contributions(contributions, values, top=2)
    assert [parse_contributions(k) for k in kept] == [
        {RECENCY: (-0.9, None), DEMOS: (0.5, 1.0)},
        {RECENCY: (0.1, 4.5), DEMOS: (0.0, 0.0)},
    ]
    assert json.loads(kept[0])[0][0] == RECENCY  # largest first
    assert compact_contributions(contributions, values, top=0) == [None, None]


@given(
    st.lists(st.floats(-60, 60, allow_nan=False), min_size=0, max_size=5),
    st.integers(-98, 98),
)
@settings(max_examples=300, deadline=None)
def test_apportioned_points_always_add_up_to_the_total(parts, total):
    parts = [*parts, total - sum(parts)]  # parts that add up to the total, as a lead's do
    whole = _apportion(parts, total)
    assert sum(whole) == total
    assert all(abs(w - p) < 1 + 1e-9 for w, p in zip(whole, parts, strict=True))


@given(
    st.dictionaries(st.sampled_from(sorted(SPECS)[:20]), st.floats(-3, 3, allow_nan=False), max_size=8),
    st.dictionaries(st.sampled_from(sorted(SPECS)[:20]), st.floats(-3, 3, allow_nan=False), max_size=8),
    st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_the_reasons_points_add_up_to_the_change(before, now, new_model):
    rows = [run("L", "3", {f: (c, 1.0) for f, c in before.items()})]
    rows_now = [run("L", "4" if new_model else "3", {f: (c, 2.0) for f, c in now.items()})]
    out = movement(rows_now, rows)
    points = [int(p) for p in re.findall(r"([+-]\d+) points?(?:$| \|)", out["change_reasons"].iat[0])]
    assert sum(points) == out["score_change"].iat[0] or (out["score_change"].iat[0] == 0 and points == [])
    assert len([p for p in out["change_reasons"].iat[0].split(" | ") if not p.startswith("other")]) <= 2


def _compact_by_definition(contributions: pd.DataFrame, values: pd.DataFrame, top: int) -> list[str]:
    """The stored text as the docstring defines it, one lead and one cell at a time (the writer builds it a column
    at a time)."""
    from leadscore.models.movement import _plain

    out = []
    for i in range(len(contributions)):
        row = contributions.iloc[i].drop("base_value")
        chosen = row.abs().sort_values(ascending=False, kind="stable").index[:top]
        cells = [[f, round(float(row[f]), 6), _plain(values[f].iloc[i])] for f in chosen]
        out.append(json.dumps(cells, separators=(",", ":")))
    return out


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_stored_contributions_are_the_json_of_each_leads_largest_cells(data):
    rows = data.draw(st.integers(1, 6))
    numbers = st.floats(-1e3, 1e3, allow_nan=False) | st.sampled_from([0.0, -0.0, 1.2e-5, 2.5e-7, 123.4567895])
    # one absolute value per cell of a row: "largest first" is then unambiguous
    per_row = st.lists(numbers, min_size=5, max_size=5, unique_by=abs)
    contributions = pd.DataFrame([data.draw(per_row) for _ in range(rows)], columns=[f"f{j}" for j in range(5)])
    contributions["base_value"] = -1.0
    cell = st.floats(allow_nan=True, allow_infinity=True) | st.none()
    values = pd.DataFrame(
        {
            "f0": pd.Series(data.draw(st.lists(cell, min_size=rows, max_size=rows)), dtype="float64"),
            "f1": pd.Categorical(
                data.draw(st.lists(st.sampled_from(["a", "5", 'q"x', None]), min_size=rows, max_size=rows))
            ),
            "f2": data.draw(st.lists(st.booleans(), min_size=rows, max_size=rows)),
            "f3": pd.array(
                data.draw(st.lists(st.integers(-9, 9) | st.none(), min_size=rows, max_size=rows)), dtype="Int64"
            ),
            "f4": pd.Series(
                data.draw(st.lists(st.text(max_size=3) | st.none(), min_size=rows, max_size=rows)), dtype="string"
            ),
        }
    )
    top = data.draw(st.integers(1, 5))
    assert compact_contributions(contributions, values, top=top) == _compact_by_definition(contributions, values, top)
