"""Derived columns: exact values on hand-made rows, and the point-in-time rules they obey."""

import pandas as pd

from leadscore.features.derived import date_part, days_between, label_from_outcomes


def utc(*values):
    return pd.Series(pd.to_datetime(list(values), utc=True, format="mixed"))


def test_date_parts_are_names_or_numbers_and_unknown_after_the_cutoff():
    times = utc("2025-03-03 09:30", "2025-03-08 18:00", None)
    assert date_part(times, "weekday").tolist()[:2] == ["Monday", "Saturday"]
    assert date_part(times, "month").tolist()[:2] == ["March", "March"]
    assert date_part(times, "hour").tolist()[:2] == [9.0, 18.0]
    cutoff = utc("2025-03-03 09:30", "2025-03-07", "2025-03-07")
    known = date_part(times, "weekday", cutoff=cutoff)
    assert known.iloc[0] == "Monday" and known.isna().tolist() == [False, True, True]


def test_days_between_is_end_minus_start_and_needs_both_known():
    start = utc("2025-01-01", "2025-01-01", "2025-01-01")
    end = utc("2025-01-11 12:00", "2025-03-01", None)
    assert days_between(start, end).tolist()[:2] == [10.5, 59.0]
    cutoff = utc("2025-02-01", "2025-02-01", "2025-02-01")
    assert days_between(start, end, cutoff=cutoff).isna().tolist() == [False, True, True]


def test_a_joined_label_counts_outcomes_inside_the_horizon_only():
    keys = pd.Series(["a", "b", "c", "d", "e", "f"])
    start = utc("2025-01-01", "2025-01-01", "2025-01-01", "2025-01-01", "2025-03-20", "2025-03-20")
    outcome_keys = pd.Series(["a", "b", "b", "c", "f", "x"])
    outcome_times = utc("2025-02-01", "2024-12-01", "2025-05-01", "2025-01-01", "2025-03-25", "2025-02-01")
    joined = label_from_outcomes(
        keys, start, outcome_keys, outcome_times, horizon_days=30, as_of=pd.Timestamp("2025-04-01", tz="UTC")
    )
    # a: won on day 31, outside (start, start + 30 d]; b: once before its time and once too late;
    # c: won at its own time (not after it); d: nothing, horizon passed; e: horizon still running -> open;
    # f: won inside the window before as_of -> 1 although its horizon still runs
    assert joined.label.tolist() == ["0", "0", "0", "0", pd.NA, "1"]
    assert joined.label_time.iloc[5] == pd.Timestamp("2025-03-25", tz="UTC") and joined.label_time.iloc[:5].isna().all()
    assert joined.outcomes_before_start == 2
    inside = label_from_outcomes(
        keys, start, outcome_keys, outcome_times, horizon_days=31, as_of=pd.Timestamp("2025-04-01", tz="UTC")
    )
    assert inside.label.iloc[0] == "1"
