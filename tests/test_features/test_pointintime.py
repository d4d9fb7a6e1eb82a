"""The point-in-time join against a brute-force reference: unique keys (the scoring fast path) and repeated ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.features.pointintime import NAT, expand_before, to_ns


def brute_force(query_keys, query_times, row_keys, row_times) -> list[tuple[int, int]]:
    """Every (query, row) with the same key and a row time strictly before the query time, in row order."""
    return [
        (q, r)
        for r in range(len(row_keys))
        for q in range(len(query_keys))
        if row_keys[r] >= 0 and row_keys[r] == query_keys[q] and row_times[r] != NAT and row_times[r] < query_times[q]
    ]


times = st.integers(min_value=0, max_value=20) | st.just(int(NAT))


@settings(max_examples=200, deadline=None)
@given(
    query=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 20)), max_size=8),
    rows=st.lists(st.tuples(st.integers(-1, 7), times), max_size=25),
    unique=st.booleans(),
)
def test_expand_before_equals_brute_force(query, rows, unique):
    if unique:  # one query per key: the lookup path batch scoring takes
        query = list({k: (k, t) for k, t in query}.values())
    query_keys = np.array([k for k, _ in query], dtype="int64")
    query_times = np.array([t for _, t in query], dtype="int64")
    row_keys = np.array([k for k, _ in rows], dtype="int64")
    row_times = np.array([t for _, t in rows], dtype="int64")
    got_query, got_row = expand_before(query_keys, query_times, row_keys, row_times)
    assert list(zip(got_query.tolist(), got_row.tolist(), strict=True)) == brute_force(
        query_keys, query_times, row_keys, row_times
    )


def test_to_ns_reads_any_unit_and_zone_as_utc_nanoseconds():
    stamps = pd.Series(pd.to_datetime(["2024-01-01 10:00", None, "2025-03-01 00:00"], utc=True))
    expected = [1_704_103_200 * 10**9, int(NAT), 1_740_787_200 * 10**9]
    for values in (
        stamps,
        stamps.astype("datetime64[s, UTC]"),
        stamps.dt.tz_convert("Europe/Paris"),
        stamps.astype("datetime64[ns, UTC]"),
        pd.DatetimeIndex(stamps),
    ):
        assert to_ns(values).tolist() == expected
    naive = pd.Series(pd.to_datetime(["2024-01-01 10:00", None]))
    assert to_ns(naive).tolist() == expected[:2]


def test_to_ns_does_not_hand_out_a_writable_view_of_the_input():
    stamps = pd.Series(pd.to_datetime(["2024-01-01"], utc=True)).astype("datetime64[ns, UTC]")
    out = to_ns(stamps)
    assert not out.flags.writeable
