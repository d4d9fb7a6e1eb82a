"""Vectorised point-in-time joins: which rows of a table each (key, cutoff_time) may see.

Every helper here takes the strict rule of the design: a row is visible at a cutoff only when its time is
strictly before the cutoff. Times are int64 nanoseconds since the epoch (UTC).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def to_ns(values: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """UTC timestamps as int64 nanoseconds; missing values become the smallest int64 (NaT)."""
    series = pd.Series(values)
    if getattr(series.dt, "tz", None) is not None:
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    return series.astype("datetime64[ns]").to_numpy().view("int64")


NAT = np.iinfo("int64").min


def expand_before(
    query_keys: np.ndarray, query_times: np.ndarray, row_keys: np.ndarray, row_times: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (query position, row position) with equal keys and row time strictly before the query time.

    Keys are non-negative integer codes; a row whose key is negative (unknown) pairs with nothing. This is a
    many-to-many join done with counts and offsets, so several cutoffs per lead cost no Python loop.
    """
    n_keys = int(max(query_keys.max(initial=-1), row_keys.max(initial=-1))) + 1
    order = np.argsort(query_keys, kind="stable")
    per_key = np.bincount(query_keys, minlength=n_keys)
    first = np.cumsum(per_key) - per_key
    known = row_keys >= 0
    row_idx = np.flatnonzero(known)
    keys = row_keys[row_idx]
    repeats = per_key[keys]
    row_rep = np.repeat(row_idx, repeats)
    offsets = np.arange(len(row_rep)) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    query_rep = order[np.repeat(first[keys], repeats) + offsets]
    visible = (row_times[row_rep] < query_times[query_rep]) & (row_times[row_rep] != NAT)
    return query_rep[visible], row_rep[visible]


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
