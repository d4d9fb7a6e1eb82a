"""Vectorised point-in-time joins: which rows of a table each (key, cutoff_time) may see.

Every helper here takes the strict rule of the design: a row is visible at a cutoff only when its time is
strictly before the cutoff. Times are int64 nanoseconds since the epoch (UTC).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.features.schemas import KNOWN_AT_SUFFIX


def to_ns(values: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """UTC timestamps as int64 nanoseconds; missing values become the smallest int64 (NaT).

    A datetime column already in nanoseconds is read in place (a read-only view: 50M event times are not copied).
    """
    series = pd.Series(values)
    if isinstance(series.dtype, pd.DatetimeTZDtype) or series.dtype.kind == "M":
        # tz-aware values are stored as UTC instants, naive ones as written: asi8 is what the conversion below gives
        array = series.array if series.array.unit == "ns" else series.array.as_unit("ns")
        out = np.asarray(array.asi8).view()
        out.flags.writeable = False
        return out
    if getattr(series.dt, "tz", None) is not None:
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    return series.astype("datetime64[ns]").to_numpy().view("int64")


NAT = np.iinfo("int64").min


def epoch_units(values: pd.Series) -> tuple[np.ndarray, int]:
    """The int64 behind a datetime column in its own unit (read in place, read-only; NaT stays NAT) and the factor
    from that unit to nanoseconds: compare 50M event times without converting them all."""
    series = pd.Series(values)
    if not (isinstance(series.dtype, pd.DatetimeTZDtype) or series.dtype.kind == "M"):
        return to_ns(series), 1
    out = np.asarray(series.array.asi8).view()
    out.flags.writeable = False
    return out, int(pd.Timedelta(1, unit=series.array.unit).value)


def expand_before(
    query_keys: np.ndarray, query_times: np.ndarray, row_keys: np.ndarray, row_times: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (query position, row position) with equal keys and row time strictly before the query time.

    Keys are integer codes; a row or query whose key is negative (unknown) pairs with nothing. Several cutoffs per
    key cost no Python loop (a compiled loop over the rows, on every core). Pairs come in row order (then query
    order within a row).
    """
    from leadscore.features.kernels import pairs_before  # numba compiles on first use, not when features are imported

    return pairs_before(query_keys, query_times, row_keys, row_times)


def count_before(
    row_keys: np.ndarray, row_times: np.ndarray, query_keys: np.ndarray, query_times: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each query, how many rows share its key with a time strictly before it, and the latest such time.

    Done by sorting rows on (key, time) and binary search, so a key with many rows costs no blow-up.
    Returns (counts, latest time in ns or NAT).
    """
    valid = (row_keys >= 0) & (row_times != NAT)
    row_keys, row_times = row_keys[valid], row_times[valid]
    # Rank all times together so that (key, rank) packs into one sortable int64.
    ranks = np.unique(np.concatenate([row_times, query_times]))
    width = len(ranks) + 1
    row_packed = row_keys.astype("int64") * width + np.searchsorted(ranks, row_times)
    order = np.argsort(row_packed, kind="stable")
    sorted_packed = row_packed[order]
    query_packed = query_keys.astype("int64") * width + np.searchsorted(ranks, query_times)
    upto = np.searchsorted(sorted_packed, query_packed, side="left")
    start = np.searchsorted(sorted_packed, query_keys.astype("int64") * width, side="left")
    counts = np.where(query_keys >= 0, upto - start, 0)
    latest = np.full(len(query_keys), NAT, dtype="int64")
    has = counts > 0
    latest[has] = row_times[order[upto[has] - 1]]
    return counts, latest


def known_fields(rows: pd.DataFrame, fields: tuple[str, ...], cutoff_ns: np.ndarray) -> pd.DataFrame:
    """`rows` (one per cutoff) with each of `fields` missing where it was filled in at or after the cutoff, or at a
    time nobody recorded: its `<field>_known_at` column says when it became known."""
    present = [f for f in fields if f in rows]
    if not present:
        return rows
    rows = rows.copy()
    for field in present:
        if field + KNOWN_AT_SUFFIX not in rows:
            raise KeyError(f"the leads table has no {field + KNOWN_AT_SUFFIX} column: when was {field} filled in?")
        known_at = to_ns(rows[field + KNOWN_AT_SUFFIX])
        unknown = (known_at == NAT) | (known_at >= cutoff_ns)
        rows[field] = rows[field].mask(unknown)
    return rows
