"""The compiled event-window kernels: pairs across block and thread boundaries, ages and window counts by hand."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.features import kernels
from leadscore.features.kernels import NAT, pairs_before, window_columns, window_counts

NS_PER_DAY = 86_400 * 10**9


@settings(max_examples=100, deadline=None)
@given(
    query=st.lists(st.tuples(st.integers(-1, 5), st.integers(0, 20)), max_size=8),
    rows=st.lists(st.tuples(st.integers(-1, 6), st.integers(0, 20) | st.just(int(NAT)), st.booleans()), max_size=40),
    block=st.integers(1, 7),
    threads=st.integers(1, 3),
)
def test_pairs_before_equals_brute_force_across_blocks_and_threads(query, rows, block, threads):
    query_keys = np.array([k for k, _ in query], dtype="int64")
    query_times = np.array([t for _, t in query], dtype="int64")
    row_keys = np.array([k for k, _, _ in rows], dtype="int32")
    row_times = np.array([t for _, t, _ in rows], dtype="int64")
    row_skip = np.array([s for _, _, s in rows], dtype=bool)
    expected = [
        (q, r)
        for r in range(len(rows))
        for q in range(len(query))
        if not row_skip[r]
        and row_keys[r] >= 0
        and row_keys[r] == query_keys[q]
        and row_times[r] != NAT
        and row_times[r] < query_times[q]
    ]
    saved = kernels._BLOCK
    kernels._BLOCK = block  # several blocks, so the blocks' offsets and the threads' writes are exercised
    try:
        got = pairs_before(query_keys, query_times, row_keys, row_times, row_skip=row_skip, n_threads=threads)
    finally:
        kernels._BLOCK = saved
    assert list(zip(got[0].tolist(), got[1].tolist(), strict=True)) == expected
    assert got[0].dtype == got[1].dtype == np.int64


def test_window_columns_gives_each_pair_its_type_and_age_in_days():
    # event times in seconds (the Parquet unit), cutoffs in ns
    row_times = np.array([0, 86_400, 43_200], dtype="int64")
    row_types = np.array([3, -1, 0], dtype="int8")
    query_ns = np.array([2 * NS_PER_DAY, 10 * NS_PER_DAY], dtype="int64")
    types, ages = window_columns(
        np.array([0, 1, 1]),
        np.array([0, 1, 2]),
        row_types=row_types,
        row_times=row_times,
        query_ns=query_ns,
        per_ns=10**9,
        n_threads=2,
    )
    assert types.tolist() == [3, -1, 0] and types.dtype == np.int8
    assert ages.tolist() == [2.0, 9.0, 9.5]


def test_window_counts_counts_known_types_up_to_the_window_inclusive():
    row = np.array([0, 0, 1, 1, 1, 2])
    type_code = np.array([0, 1, 1, -1, 1, 0], dtype="int8")
    age_days = np.array([1.0, 7.0, 7.5, 1.0, 0.1, np.inf])
    assert window_counts(row, type_code, age_days, window_days=7, n_rows=4, n_types=2).tolist() == [
        [1, 1],
        [0, 1],
        [0, 0],
        [0, 0],
    ]
    everything = window_counts(row, type_code, age_days, window_days=np.inf, n_rows=4, n_types=2)
    assert everything.tolist() == [[1, 1], [0, 2], [1, 0], [0, 0]]


def test_pairs_from_every_block_land_at_their_offsets(monkeypatch):
    monkeypatch.setattr(kernels, "_BLOCK", 2)  # rows 0-1, 2-3, 4: three blocks, each with pairs
    query_keys, query_times = np.array([0, 1]), np.array([10, 10])
    row_keys = np.array([0, 1, 1, 0, 1], dtype="int32")
    row_times = np.array([1, 2, 3, 4, 50])  # the last row is too late
    query, row = pairs_before(query_keys, query_times, row_keys, row_times, n_threads=2)
    assert list(zip(query.tolist(), row.tolist(), strict=True)) == [(0, 0), (1, 1), (1, 2), (0, 3)]
