"""Handing freed memory back to the operating system between the big steps of a run."""

from __future__ import annotations

import functools


def release_unused_memory() -> None:
    """Hand freed memory back to the operating system: Arrow's allocator (pandas' text columns live in Arrow
    buffers) keeps freed pages for reuse, which after validating 50M events held 0.7 GB nobody used; glibc's malloc
    (numpy) keeps freed pages inside its heap until `malloc_trim` (about 0.1 GB over a 1M-lead predict)."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _glibc():
    """The C library when it is glibc (the one with `malloc_trim`), else None."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 - an AttributeError here means another C library (musl, macOS)
    except (OSError, AttributeError):
        return None
    return libc


def repeated_text_as_categories(frame, *, share: float = 0.01):
    """`frame` with each text column of few distinct values (at most `share` of its rows) held as a pandas category:
    a million leads share a few hundred job titles, countries or sources, held in one or two bytes a row instead of
    about twenty. The values read the same (`astype("string")` gives them back); ids and other columns are kept."""
    import pandas as pd

    limit = max(1, int(len(frame) * share))
    repeated = [
        c
        for c in frame.columns
        if pd.api.types.is_string_dtype(frame[c].dtype) and frame[c].nunique(dropna=True) <= limit
    ]
    return frame.astype(dict.fromkeys(repeated, "category")) if repeated else frame
