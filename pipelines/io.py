"""Reading the canonical tables (CSV, Parquet or SQL) and writing outputs atomically."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from pipelines.config import TableSource
from pipelines.errors import DataError, UsageError


class InputError(DataError):
    """A table that cannot be read at all (missing file, unknown format, unreachable database)."""


def read_source(
    source: TableSource, *, name: str, base_dir: Path, dictionary_columns: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Read one table as stored; CSV cells stay text so that validation sees the values as written.

    `dictionary_columns` (Parquet and SQL) are read dictionary-encoded, as categoricals: for ids repeated over
    millions of rows (an event's lead) that is a fraction of the memory of one string per row.
    """
    from pipelines.intake import read_sql_checked

    if source.sql_url is not None:
        return read_sql_checked(source.sql_url, source.sql_table or "", name=name,
                                dictionary_columns=dictionary_columns)  # fmt: skip
    path = Path(source.path or "")
    path = path if path.is_absolute() else base_dir / path
    return read_file(path, name=name, dictionary_columns=dictionary_columns, encoding=source.encoding)


def read_file(
    path: Path,
    *,
    name: str,
    separator: str = ",",
    dictionary_columns: tuple[str, ...] = (),
    encoding: str | None = None,
) -> pd.DataFrame:
    """A CSV or Parquet file read strictly (see `pipelines.intake`): every failure is a DataError naming it."""
    from pipelines.intake import file_kind, read_csv_strict, read_parquet_checked

    kind = file_kind(Path(path), name=name)
    if kind == "csv":
        return read_csv_strict(Path(path), name=name, separator=separator, encoding=encoding)
    return read_parquet_checked(Path(path), name=name, dictionary_columns=dictionary_columns)


def _read_parquet_by_column(path: Path, *, dictionary_columns: tuple[str, ...]) -> pd.DataFrame:
    """A large Parquet table one column at a time, `dictionary_columns` as categoricals: Arrow's copy of a column
    is freed before the next is read, so the peak is the frame plus one column instead of twice the table."""
    import pyarrow.parquet as pq

    names = pq.ParquetDataset(path).schema.names
    columns = {}
    for name in names:
        table = pq.read_table(path, columns=[name], read_dictionary=[name] if name in dictionary_columns else None)
        table = _timestamps_in_ns(table)
        columns[name] = table.to_pandas(self_destruct=True, split_blocks=True)[name]
        del table
        release_unused_memory()
    return pd.DataFrame(columns, copy=False)  # dict input would be copied by default


def _timestamps_in_ns(table):
    """Timestamp columns stored in ms/us converted to ns in Arrow, before pandas sees them: validation's timestamps
    are ns, and converting there would hold the stored column and its ns copy at once (50M event times: 0.9 GB).
    A column with values beyond the ns range (after 2262) stays as stored, for validation to reject them by row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for i, field in enumerate(table.schema):
        if not pa.types.is_timestamp(field.type) or field.type.unit == "ns":
            continue
        target = pa.timestamp("ns", tz=field.type.tz)
        try:
            converted = pc.cast(table.column(i), target, safe=True)
        except pa.ArrowInvalid:  # out of the ns range: left to validation
            continue
        table = table.set_column(i, field.with_type(target), converted)
    return table


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


def write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it over `path` (see `pipelines.publish`).

    The rename is atomic on one file system, so a crash leaves either the old file or the new one,
    never half of one; the file gets the permissions the umask allows.
    """
    from pipelines.publish import publish

    publish({Path(path): write})
    return Path(path)


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells a spreadsheet would run as a formula (=, +, -, @, tab, CR first) get a leading apostrophe."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
            text = values.astype("string")
            risky = text.str.startswith(FORMULA_PREFIXES).fillna(False).astype(bool)
            if risky.any():
                out[column] = text.mask(risky, "'" + text)
    return out


def neutralise_carriage_returns(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells with a carriage return get a line feed instead: the CSV writer quotes a cell holding a line feed,
    but not one holding a bare CR, which readers take for the end of the row."""
    out = frame
    for column in frame.columns:
        values = frame[column]
        if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
            text = values.astype("string")
            has_cr = text.str.contains("\r", regex=False).fillna(False).astype(bool)
            if has_cr.any():
                out = out.copy() if out is frame else out
                out[column] = text.mask(has_cr, text.str.replace("\r\n", "\n", regex=False)
                                        .str.replace("\r", "\n", regex=False))  # fmt: skip
    return out


def frame_writer(frame: pd.DataFrame, path: Path) -> Callable[[Path], None]:
    """A function writing `frame` to a given file in the format `path`'s suffix names (CSV or Parquet).

    CSV text cells are neutralised against spreadsheet formula injection and bare carriage returns.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        safe = neutralise_carriage_returns(neutralise_formulas(frame))
        return lambda tmp: safe.to_csv(tmp, index=False, lineterminator="\n")
    if suffix in {".parquet", ".pq"}:
        return lambda tmp: frame.to_parquet(tmp, index=False)
    raise UsageError(f"cannot write '{path}': use a .csv or .parquet file name")


def write_frame(frame: pd.DataFrame, path: Path) -> Path:
    """Write a DataFrame as CSV or Parquet (by suffix), atomically and reproducibly."""
    return write_atomically(path, frame_writer(frame, path))


def write_json(data: dict, path: Path) -> Path:
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
