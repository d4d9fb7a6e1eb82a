"""Lookups on columns of a million rows: membership and position of ids, and transforms of repeated values.

pandas' `isin` on Arrow-backed text builds a Python list of the wanted values on every call (seconds for a million
ids) and its `get_indexer` hashes Python strings; Arrow's hash set does the same work in C. A categorical column is
decided once per category and read back by code; text transforms run once per distinct value.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd


def on_distinct(values: pd.Series, transform: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """`transform(values)` computed once per distinct value (missing included) and spread back to the rows, with
    the index of `values`: a million leads share a few thousand job titles. `transform` must be row-wise. Object
    columns are transformed as they are (factorising would take 1, 1.0 and True for one value)."""
    if values.dtype == object:
        return transform(values)
    codes, distinct = pd.factorize(values, use_na_sentinel=False)
    done = transform(pd.Series(distinct))
    return done.iloc[codes].set_axis(values.index)


def _is_text(values) -> bool:
    return pd.api.types.is_string_dtype(values)


def _arrow_text(values):
    import pyarrow as pa

    return pa.array(pd.Series(values).astype("string"), type=pa.large_string())


def positions(values: pd.Series | pd.Index, index: pd.Index) -> np.ndarray:
    """Position of each of `values` in `index` (int64; -1 when absent or missing; an id repeated in `index` reads
    its first position)."""
    if not (_is_text(values) and _is_text(index)):
        return pd.Index(index).get_indexer(values).astype("int64")
    import pyarrow.compute as pc

    if len(index) <= 4 * len(values):
        found = pc.index_in(_arrow_text(values), value_set=_arrow_text(index))
        return found.fill_null(-1).to_numpy(zero_copy_only=False).astype("int64")
    # a few ids in a large index (a chunk's leads among all event leads): hash the few, not the index
    codes, distinct = pd.factorize(pd.Series(values), use_na_sentinel=True)
    found = pc.index_in(_arrow_text(index), value_set=_arrow_text(distinct)).fill_null(-1)
    found = found.to_numpy(zero_copy_only=False).astype("int64")
    at = np.flatnonzero(found >= 0)
    of_distinct = np.full(len(distinct) + 1, -1, dtype="int64")  # the last slot answers code -1 (missing)
    of_distinct[found[at[::-1]]] = at[::-1]  # with a repeated id in `index`, its first position (as Arrow's)
    return of_distinct[codes]


def is_in(values: pd.Series, allowed) -> pd.Series:
    """`values.isin(allowed)` (missing values are never in), with the index of `values`."""
    allowed = pd.Index(allowed).dropna()
    if isinstance(values.dtype, pd.CategoricalDtype):
        per_category = np.append(_found_in(values.cat.categories, allowed), False)  # code -1 (missing): the last
        return pd.Series(per_category[values.array.codes], index=values.index)
    return pd.Series(_found_in(values, allowed), index=values.index) & values.notna()


def _found_in(values: pd.Series | pd.Index, allowed: pd.Index) -> np.ndarray:
    if _is_text(values) and _is_text(allowed):
        import pyarrow.compute as pc

        found = pc.is_in(_arrow_text(values), value_set=_arrow_text(allowed))
        return found.fill_null(False).to_numpy(zero_copy_only=False)
    return allowed.unique().get_indexer(values) >= 0
