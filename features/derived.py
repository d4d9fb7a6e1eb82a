"""Derived columns: what users otherwise compute in a preprocessing script before the export reaches us.

Date parts of a timestamp, days between two timestamps, and a label with its time taken from a second table by
key (won deals joined to qualified leads). All obey the point-in-time rules: a value that depends on a timestamp
later than the row's own time (its cutoff) was not known when the row would have been scored, so it is missing;
a label is 1 only for an outcome inside (time, time + horizon], 0 once the horizon has passed without one, and
empty (an open lead, to be scored) while the horizon is still running.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DATE_PARTS = {
    "weekday": lambda t: t.dt.day_name(),
    "month": lambda t: t.dt.month_name(),
    "hour": lambda t: t.dt.hour.astype("float64"),
    "day_of_month": lambda t: t.dt.day.astype("float64"),
    "year": lambda t: t.dt.year.astype("float64"),
}
CATEGORICAL_PARTS = ("weekday", "month")


def known_at(times: pd.Series, cutoff: pd.Series | None) -> pd.Series:
    """The timestamps known by the row's cutoff (at or before it: the row's own moment counts); all without one."""
    if cutoff is None:
        return times
    return times.where(times.isna() | (times <= cutoff.to_numpy()) | cutoff.isna().to_numpy())


def date_part(times: pd.Series, part: str, *, cutoff: pd.Series | None = None) -> pd.Series:
    """One part of each timestamp (weekday and month as names, the others as numbers), missing when unknown."""
    if part not in DATE_PARTS:
        raise ValueError(f"unknown date part {part!r}; known: {list(DATE_PARTS)}")
    times = known_at(times, cutoff)
    out = DATE_PARTS[part](times)
    return out.astype("string").where(times.notna()) if part in CATEGORICAL_PARTS else out.where(times.notna())


def days_between(start: pd.Series, end: pd.Series, *, cutoff: pd.Series | None = None) -> pd.Series:
    """end - start in days (fractional); missing when either is missing or not yet known at the cutoff."""
    start, end = known_at(start, cutoff), known_at(end, cutoff)
    return ((end - start).dt.total_seconds() / 86_400.0).astype("float64")


@dataclass(frozen=True)
class JoinedLabel:
    label: pd.Series  # "1", "0" or <NA> (the horizon still runs: an open lead)
    label_time: pd.Series  # time of the first positive outcome in the window, else NaT
    outcomes_before_start: int  # positive outcomes dated at or before their row's time: never a label


def label_from_outcomes(
    keys: pd.Series,
    start: pd.Series,
    outcome_keys: pd.Series,
    outcome_times: pd.Series,
    *,
    horizon_days: float,
    as_of: pd.Timestamp,
) -> JoinedLabel:
    """Per row: 1 when a positive outcome with its key falls in (start, start + horizon]; 0 when start + horizon
    is at or before `as_of` without one; otherwise missing. `outcome_*` hold only positive outcomes."""
    horizon = pd.Timedelta(days=horizon_days)
    outcomes = pd.DataFrame(
        {"key": outcome_keys.astype("string").str.strip().to_numpy(), "time": outcome_times.to_numpy()}
    ).dropna()
    rows = pd.DataFrame(
        {"key": keys.astype("string").str.strip().to_numpy(), "start": start.to_numpy(), "row": np.arange(len(keys))}
    )
    pairs = rows.merge(outcomes, on="key", how="inner")
    inside = (pairs["time"] > pairs["start"]) & (pairs["time"] <= pairs["start"] + horizon) & (pairs["time"] <= as_of)
    before = int((pairs["time"] <= pairs["start"]).sum())
    first = pairs[inside].groupby("row")["time"].min()
    won = np.zeros(len(keys), dtype=bool)
    won[first.index.to_numpy()] = True
    matured = (start + horizon <= as_of).fillna(False).to_numpy()
    label = pd.Series(pd.NA, index=keys.index, dtype="string")
    label[matured] = "0"
    label[won] = "1"
    label[start.isna().to_numpy()] = pd.NA
    label_time = pd.Series(pd.NaT, index=keys.index, dtype=outcomes["time"].dtype if len(outcomes) else start.dtype)
    label_time.iloc[first.index.to_numpy()] = first.to_numpy()
    return JoinedLabel(label, label_time, before)
