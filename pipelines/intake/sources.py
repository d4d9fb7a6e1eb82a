"""Reading one canonical table from where the config says it is: a CSV or Parquet file, or a SQL table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from leadscore.pipelines.config import TableSource
from leadscore.pipelines.errors import DataError
from leadscore.pipelines.intake.files import file_kind, read_csv_strict, read_parquet_checked, read_sql_checked

# a column the export conventions may add to a table as read: the reason a row is set aside (out of scope)
SET_ASIDE_COLUMN = "_leadscore_set_aside"


class InputError(DataError):
    """A table that cannot be read at all (missing file, unknown format, unreachable database)."""


def read_source(
    source: TableSource, *, name: str, base_dir: Path, dictionary_columns: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Read one table as stored; CSV cells stay text so that validation sees the values as written.

    `dictionary_columns` (Parquet and SQL) are read dictionary-encoded, as categoricals: for ids repeated over
    millions of rows (an event's lead) that is a fraction of the memory of one string per row.
    """
    if source.sql_url is not None:
        return read_sql_checked(
            source.sql_url, source.sql_table or "", name=name, dictionary_columns=dictionary_columns
        )
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
    """A CSV or Parquet file read strictly (see `pipelines.intake.files`): every failure is a DataError naming it."""
    kind = file_kind(Path(path), name=name)
    if kind == "csv":
        return read_csv_strict(Path(path), name=name, separator=separator, encoding=encoding)
    return read_parquet_checked(Path(path), name=name, dictionary_columns=dictionary_columns)
