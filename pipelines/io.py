"""Reading the canonical tables (CSV, Parquet or SQL) and writing outputs atomically."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from pipelines.config import TableSource


class InputError(ValueError):
    """A table that cannot be read at all (missing file, unknown format, unreachable database)."""


def read_source(
    source: TableSource, *, name: str, base_dir: Path, dictionary_columns: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Read one table as stored; CSV cells stay text so that validation sees the values as written.

    `dictionary_columns` (Parquet only) are read dictionary-encoded, as categoricals: for ids repeated over
    millions of rows (an event's lead) that is a fraction of the memory of one string per row.
    """
    if source.sql_url is not None:
        return _read_sql(source.sql_url, source.sql_table or "", name=name)
    path = Path(source.path or "")
    path = path if path.is_absolute() else base_dir / path
    return read_file(path, name=name, dictionary_columns=dictionary_columns)


def read_file(path: Path, *, name: str, separator: str = ",", dictionary_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    if not path.exists():
        raise InputError(f"table '{name}': file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in {".parquet", ".pq"} or path.is_dir():
        if dictionary_columns:
            return _read_parquet_by_column(path, dictionary_columns=dictionary_columns)
        return pd.read_parquet(path)
    if suffix in {".csv", ".txt", ".tsv"} or path.name.endswith(".csv.gz"):
        return pd.read_csv(path, sep=separator, dtype=str, keep_default_na=True, na_values=[""])
    raise InputError(f"table '{name}': unknown file type '{suffix}' for {path} (use .csv or .parquet)")


def _read_parquet_by_column(path: Path, *, dictionary_columns: tuple[str, ...]) -> pd.DataFrame:
    """A large Parquet table one column at a time, `dictionary_columns` as categoricals: Arrow's copy of a column
    is freed before the next is read, so the peak is the frame plus one column instead of twice the table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = pq.ParquetDataset(path).schema.names
    columns = {}
    for name in names:
        table = pq.read_table(path, columns=[name], read_dictionary=[name] if name in dictionary_columns else None)
        columns[name] = table.to_pandas(self_destruct=True, split_blocks=True)[name]
        del table
        pa.default_memory_pool().release_unused()
    return pd.DataFrame(columns, copy=False)  # dict input would be copied by default


def _read_sql(url: str, table: str, *, name: str) -> pd.DataFrame:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            if not sqlalchemy.inspect(connection).has_table(table):
                raise InputError(f"table '{name}': no SQL table '{table}' at {engine.url!r}")
            return pd.read_sql_table(table, connection)
    finally:
        engine.dispose()


def write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it over `path`.

    The rename is atomic on one file system, so a crash leaves either the old file or the new one,
    never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


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


def write_frame(frame: pd.DataFrame, path: Path) -> Path:
    """Write a DataFrame as CSV or Parquet (by suffix), atomically and reproducibly.

    CSV text cells are neutralised against spreadsheet formula injection.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        safe = neutralise_formulas(frame)
        return write_atomically(path, lambda tmp: safe.to_csv(tmp, index=False, lineterminator="\n"))
    if suffix in {".parquet", ".pq"}:
        return write_atomically(path, lambda tmp: frame.to_parquet(tmp, index=False))
    raise InputError(f"cannot write '{path}': use a .csv or .parquet file name")


def write_json(data: dict, path: Path) -> Path:
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_sql(frame: pd.DataFrame, url: str, table: str) -> str:
    """Replace a SQL table in one transaction: the rows go to a temporary table first, then take its name."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    staging = f"{table}__leadscore_tmp"
    try:
        with engine.begin() as connection:
            frame.to_sql(staging, connection, if_exists="replace", index=False)
            quote = engine.dialect.identifier_preparer.quote
            connection.execute(sqlalchemy.text(f"DROP TABLE IF EXISTS {quote(table)}"))
            connection.execute(sqlalchemy.text(f"ALTER TABLE {quote(staging)} RENAME TO {quote(table)}"))
    finally:
        engine.dispose()
    return f"{url} table {table}"
