"""Compiled loops for the event-sized work of feature building: the point-in-time pairing of events with spine rows
and the per-window counts.

A numpy version of the same join makes about ten passes over event-sized arrays (masks, gathers, packed keys), each
writing a fresh 50M-element temporary; here each output is written once, by both cores. The kernels are numba
(compiled once, cached on disk) and release the GIL, so threads share the events in contiguous blocks.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

NAT = np.iinfo("int64").min
NS_PER_DAY = 86_400 * 10**9
_BLOCK = 1 << 21  # elements per task: enough work to amortise a task, small enough to balance the cores


def _blocks(n: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + _BLOCK, n)) for lo in range(0, n, _BLOCK)]


def worker_count() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@numba.njit(nogil=True, cache=True)
def _block_pairs(
    row_keys, row_times, row_skip, key_start, key_queries, query_times, lo, hi, write, at, out_query, out_row
):  # pragma: no cover - compiled
    """The (query, row) pairs of rows lo..hi: counted, and written from position `at` on when `write`."""
    n_keys = key_start.shape[0] - 1
    found = 0
    for i in range(lo, hi):
        key = row_keys[i]
        if key < 0 or key >= n_keys or row_skip[i]:
            continue
        t = row_times[i]
        if t == NAT:
            continue
        for j in range(key_start[key], key_start[key + 1]):
            query = key_queries[j]
            if t < query_times[query]:
                if write:
                    out_query[at + found] = query
                    out_row[at + found] = i
                found += 1
    return found


def pairs_before(
    query_keys: np.ndarray,
    query_times: np.ndarray,
    row_keys: np.ndarray,
    row_times: np.ndarray,
    *,
    row_skip: np.ndarray | None = None,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (query position, row position) with equal non-negative keys and row time strictly before the query
    time (NaT rows pair with nothing), in row order, then query order within a row. `row_skip` (bool per row): rows
    that pair with nothing whatever their key."""
    query_keys = np.asarray(query_keys)
    n_keys = int(query_keys.max(initial=-1)) + 1
    known = query_keys >= 0
    key_queries = np.flatnonzero(known)[np.argsort(query_keys[known], kind="stable")]
    key_start = np.zeros(n_keys + 1, dtype="int64")
    np.cumsum(np.bincount(query_keys[known], minlength=n_keys), out=key_start[1:])
    query_times = np.ascontiguousarray(query_times, dtype="int64")
    row_times = np.ascontiguousarray(row_times, dtype="int64")
    row_keys = np.ascontiguousarray(row_keys)
    row_skip = np.zeros(len(row_keys), dtype=bool) if row_skip is None else np.ascontiguousarray(row_skip, dtype=bool)
    blocks = _blocks(len(row_keys))
    args = (row_keys, row_times, row_skip, key_start, key_queries, query_times)
    none = np.empty(0, dtype="int64")
    with ThreadPoolExecutor(n_threads or worker_count()) as pool:  # count each block's pairs, then write them
        sizes = list(pool.map(lambda block: _block_pairs(*args, *block, False, 0, none, none), blocks))
        starts = np.concatenate([[0], np.cumsum(sizes, dtype="int64")])
        out_query = np.empty(int(starts[-1]), dtype="int64")
        out_row = np.empty(int(starts[-1]), dtype="int64")
        list(
            pool.map(lambda k: _block_pairs(*args, *blocks[k], True, starts[k], out_query, out_row), range(len(blocks)))
        )
    return out_query, out_row


@numba.njit(nogil=True, cache=True)
def _window_columns(query, row, row_types, row_times, query_ns, per_ns, lo, hi, out_type, out_age):  # pragma: no cover
    for k in range(lo, hi):
        i = row[k]
        out_type[k] = row_types[i]
        out_age[k] = (query_ns[query[k]] - row_times[i] * per_ns) / NS_PER_DAY


def window_columns(
    query: np.ndarray,
    row: np.ndarray,
    *,
    row_types: np.ndarray,
    row_times: np.ndarray,
    query_ns: np.ndarray,
    per_ns: int,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """For each pair: the row's type code, and the days from the row's time (in units of `per_ns` ns) to the
    query's time (ns)."""
    out_type = np.empty(len(row), dtype=row_types.dtype)
    out_age = np.empty(len(row), dtype="float64")
    blocks = _blocks(len(row))
    args = (query, row, row_types, row_times, query_ns, per_ns)
    with ThreadPoolExecutor(n_threads or worker_count()) as pool:
        list(pool.map(lambda block: _window_columns(*args, *block, out_type, out_age), blocks))
    return out_type, out_age


@numba.njit(nogil=True, cache=True)
def _window_counts(row, type_code, age_days, window_days, n_types, out):  # pragma: no cover
    for k in range(row.shape[0]):
        code = type_code[k]
        if code >= 0 and age_days[k] <= window_days:
            out[row[k] * n_types + code] += 1


def window_counts(
    row: np.ndarray, type_code: np.ndarray, age_days: np.ndarray, *, window_days: float, n_rows: int, n_types: int
) -> np.ndarray:
    """Matrix (rows x types) of the pairs of each row and known type (code >= 0) at most `window_days` old."""
    out = np.zeros(n_rows * n_types, dtype="int64")
    _window_counts(row, type_code, age_days, float(window_days), n_types, out)
    return out.reshape(n_rows, n_types)
