"""Reading an input file strictly: the encoding is detected or refused, the file kind checked against its name,
duplicate column names refused, and every CSV line accounted for after parsing.

A CRM export is the messiest input a data tool meets: Excel's UTF-16 and latin-1, byte-order marks, zero-byte
files, a Parquet file cut short by a failed copy, an unbalanced quote that swallows the rows after it. Each of
these stops here with a `DataError` naming the file, the line and the cause, instead of a traceback or rows that
silently go missing.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.features.schemas import TABLE_ROLES
from leadscore.pipelines.errors import DataError, UsageError
from leadscore.pipelines.memory import release_unused_memory

log = logging.getLogger(__name__)

CSV_SUFFIXES = (".csv", ".txt", ".tsv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
PARQUET_MAGIC = b"PAR1"
_BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CHUNK = 1 << 20
_ARCHIVES = (
    (b"\x1f\x8b", "gzip-compressed file", "name it .csv.gz, or decompress it"),
    (b"PK\x03\x04", "zip archive (or an Excel .xlsx workbook)", "export the sheet as CSV (UTF-8) or Parquet"),
)
_OTHER_SEPARATORS = (";", "\t", "|")


@dataclass(frozen=True)
class CsvShape:
    """What a first pass over the bytes found: the encoding, the header's names and the data lines."""

    encoding: str
    header: list[str]
    data_lines: int  # non-blank lines after the header


def setting_key(name: str, key: str) -> str | None:
    """The config key that sets `key` for the table read as `name`: `tables.leads.encoding`, `flat.encoding`,
    `flat.label_from.encoding`, `exports.more_events[0].encoding`; None for a file the config does not describe."""
    if name in TABLE_ROLES:
        return f"tables.{name}.{key}"
    if name == "flat" or name.startswith(("flat.", "exports.")):
        return f"{name}.{key}"
    return None


def file_kind(path: Path, *, name: str) -> str:
    """'csv', 'parquet' or 'parquet_dir' for an input path; a DataError for anything else."""
    if not path.exists():
        raise DataError(
            "file not found",
            where=f"table '{name}' ({path})",
            hint="check the path in the config (relative paths start at the config's folder)",
        )
    lower = path.name.lower()
    if path.is_dir():
        if lower.endswith(CSV_SUFFIXES) or not any(path.rglob("*.parquet")):
            raise DataError(
                "is a folder, not a table file",
                where=f"table '{name}' ({path})",
                hint="point the path at the CSV or Parquet file inside it",
            )
        return "parquet_dir"
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if lower.endswith(CSV_SUFFIXES):
        return "csv"
    raise DataError(
        f"unknown file type '{path.suffix}'", where=f"table '{name}' ({path})", hint="use a .csv or .parquet file"
    )


def _open_bytes(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def detect_encoding(head: bytes, *, where: str, configured: str | None) -> str:
    """The encoding of a CSV from its first bytes: a configured one, a byte-order mark, UTF-16 without a mark,
    else UTF-8 (checked over the whole file by `scan_csv`)."""
    if head.startswith(PARQUET_MAGIC):
        raise DataError("this is a Parquet file, not CSV text", where=where, hint="rename it to .parquet")
    for magic, kind, fix in _ARCHIVES:
        if head.startswith(magic):
            raise DataError(f"this is a {kind}, not CSV text", where=where, hint=fix)
    if configured:
        try:
            return codecs.lookup(configured).name
        except LookupError:
            raise UsageError(
                f"unknown encoding {configured!r}",
                where=where,
                hint="use a Python codec name, e.g. utf-8, latin-1, cp1252, utf-16",
            ) from None
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    if b"\x00" in head:
        sample = head[: len(head) // 2 * 2]
        even, odd = sample[0::2], sample[1::2]
        if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.05 * len(even):
            return "utf-16-le"
        if even.count(0) > 0.4 * len(even) and odd.count(0) < 0.05 * len(odd):
            return "utf-16-be"
        raise DataError(
            "binary data (NUL bytes), not CSV text", where=where, hint="export the table as CSV (UTF-8) or Parquet"
        )
    return "utf-8"


def scan_csv(path: Path, *, name: str, separator: str, encoding: str | None) -> CsvShape:
    """One streaming pass: decode every byte strictly, count the data lines, read the header's names."""
    where = f"table '{name}' ({path})"
    with _open_bytes(path) as handle:
        head = handle.read(4096)
        if not head:
            raise DataError(
                "the file is empty (0 bytes)",
                where=where,
                hint="export the table again; a CSV needs at least a header line",
            )
        chosen = detect_encoding(head, where=where, configured=encoding)
        decoder = codecs.getincrementaldecoder(chosen)(errors="strict")
        lines, blank, header_text, carry = 0, 0, None, ""
        block = head
        while block:
            try:
                text = carry + decoder.decode(block)
            except UnicodeDecodeError as exc:
                bad = block[exc.start : exc.start + 1]
                line = lines + 1 + (carry + block[: exc.start].decode(chosen, errors="replace")).count("\n")
                raise DataError(
                    f"not valid {chosen} text (byte {bad!r} cannot be decoded)",
                    where=where,
                    line=line,
                    hint=_encoding_hint(name),
                ) from None
            parts = text.split("\n")
            carry = parts.pop()  # the unfinished last line waits for the next block
            if header_text is None and parts:
                header_text = parts.pop(0)
            lines += len(parts)
            blank += parts.count("") + sum(map(str.isspace, parts))  # pandas skips whitespace-only lines
            block = handle.read(_CHUNK)
        carry += decoder.decode(b"", final=True)
    if header_text is None:
        header_text, carry = carry, ""
    elif carry.strip():
        lines += 1
    if not header_text.strip("\r\ufeff \t"):
        raise DataError(
            "no header line (the file holds only blank lines)",
            where=where,
            line=1,
            hint="the first line must name the columns",
        )
    header = next(csv.reader([header_text.rstrip("\r")], delimiter=separator))
    _refuse_duplicate_names(header, where=where)
    other = [sep for sep in _OTHER_SEPARATORS if len(header) == 1 and sep in header_text]
    if other:
        raise DataError(
            f"the header has one column and contains {other[0]!r}: the file seems separated by {other[0]!r}, not "
            f"by {separator!r}",
            where=where,
            line=1,
            hint="save the table comma-separated" if separator == "," else "set the separator to match the file",
        )
    if chosen != "utf-8":
        log.info("%s: read as %s", where, chosen)
    return CsvShape(chosen, header, lines - blank)


def _encoding_hint(name: str) -> str:
    key = setting_key(name, "encoding")
    if key is None:
        return "save the file as UTF-8"
    return f'save the file as UTF-8, or declare its encoding: {key} = "latin-1" (or cp1252, utf-16, ...)'


def _refuse_duplicate_names(names: list[str], *, where: str) -> None:
    seen: dict[str, int] = {}
    for position, column in enumerate(names, start=1):
        key = column.strip().lstrip("\ufeff")
        if key in seen:
            raise DataError(
                f"column name '{key}' appears twice (columns {seen[key]} and {position})",
                where=where,
                hint="rename or drop one of them: which one holds the data cannot be guessed",
            )
        seen[key] = position


def read_csv_strict(path: Path, *, name: str, separator: str = ",", encoding: str | None = None) -> pd.DataFrame:
    """A CSV with every cell as text, after `scan_csv`; rows lost to quoting are an error naming the line."""
    shape = scan_csv(path, name=name, separator=separator, encoding=encoding)
    where = f"table '{name}' ({path})"
    try:
        frame = pd.read_csv(
            # only an empty cell is missing here: "NA" may be Namibia; numbers and times read pandas' NA words later
            path,
            sep=separator,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding=shape.encoding,
        )
    except pd.errors.EmptyDataError:
        raise DataError("no header line", where=where, line=1) from None
    except pd.errors.ParserError as exc:
        found = re.search(r"(?:line|row) (\d+)", str(exc))
        cause = str(exc).replace("Error tokenizing data. C error: ", "").strip()
        raise DataError(
            f"cannot be parsed as CSV: {cause}",
            where=where,
            line=int(found.group(1)) if found else None,
            hint='an unbalanced quote (") or a stray separator; fix that line or export the table again',
        ) from None
    frame.columns = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
    _check_line_count(frame, shape, where=where, separator=separator)
    return frame


def _check_line_count(frame: pd.DataFrame, shape: CsvShape, *, where: str, separator: str) -> None:
    """Every data line is a row, or part of a quoted multi-line cell that does not look like rows of its own."""
    if len(frame) == shape.data_lines:
        return
    text_columns = [c for c in frame.columns if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])]
    breaks = pd.Series(0, index=frame.index, dtype="int64")
    for column in text_columns:
        counts = frame[column].str.count("\n").fillna(0).astype("int64")
        breaks = breaks + counts
        for position in np.flatnonzero(counts.to_numpy() > 0):
            swallowed = str(frame[column].iloc[position]).split("\n")[1:]
            rowlike = [s for s in swallowed if s.count(separator) >= max(1, len(frame.columns) - 1)]
            if rowlike:
                line = 2 + position + int(breaks.iloc[:position].sum())
                raise DataError(
                    f"a quoted cell swallows {len(swallowed)} following line(s) that look like rows, "
                    f"e.g. {rowlike[0][:60]!r}: an unbalanced quote",
                    where=where,
                    column=column,
                    row=position + 1,
                    line=line,
                    hint="close the quote on that line (or double a quote inside a quoted cell) and export again",
                )
    if len(frame) + int(breaks.sum()) != shape.data_lines:
        raise DataError(
            f"{shape.data_lines} data lines but {len(frame)} rows parsed: lines were lost to quoting",
            where=where,
            hint='look for an unbalanced quote (") and export the table again',
        )


def read_parquet_checked(path: Path, *, name: str, dictionary_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """A Parquet file (or folder of them) whose magic bytes, schema and column names are checked first."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = f"table '{name}' ({path})"
    if path.is_file():
        _check_parquet_bytes(path, where=where)
    try:
        names = pq.ParquetDataset(path).schema.names
        _refuse_duplicate_names(names, where=where)
        if dictionary_columns:
            return _read_parquet_by_column(path, dictionary_columns=dictionary_columns)
        return pd.read_parquet(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(
            f"not a readable Parquet file: {exc}",
            where=where,
            hint="the file is damaged or incomplete: copy or export it again",
        ) from None


def check_parquet_input(path: Path, *, name: str) -> None:
    """A Parquet file or dataset folder exists and, for a file, is whole: else a DataError naming it."""
    path = Path(path)
    if file_kind(path, name=name) == "csv":
        raise DataError(
            "a CSV file where a Parquet file is expected",
            where=f"{name} ({path})",
            hint="give the .parquet file written by `leadscore build-training-set`",
        )
    if path.is_file():
        _check_parquet_bytes(path, where=f"{name} ({path})")


def _check_parquet_bytes(path: Path, *, where: str) -> None:
    size = path.stat().st_size
    if size == 0:
        raise DataError("the file is empty (0 bytes)", where=where, hint="export the table again")
    with open(path, "rb") as handle:
        head = handle.read(4)
        handle.seek(max(0, size - 4))
        tail = handle.read(4)
    if head != PARQUET_MAGIC:
        looks_like_text = all(32 <= b < 127 or b in (9, 10, 13) for b in head)
        raise DataError(
            "not a Parquet file" + (" (it starts like text: a CSV named .parquet?)" if looks_like_text else ""),
            where=where,
            hint="rename a CSV to .csv, or export the table as Parquet again",
        )
    if size < 12 or tail != PARQUET_MAGIC:
        raise DataError(
            "the Parquet file is truncated (its footer is missing)",
            where=where,
            hint="the copy or export was cut short: write the file again",
        )


SQL_CHUNK_ROWS = 100_000


def read_sql_checked(
    url: str, table: str, *, name: str, dictionary_columns: tuple[str, ...] = (), chunk_rows: int = SQL_CHUNK_ROWS
) -> pd.DataFrame:
    """A SQL table; a missing table, a locked or unreachable database become one message (password hidden).

    Read `chunk_rows` at a time through a server-side cursor (PostgreSQL: a named cursor; SQLite reads lazily
    anyway), so the driver never holds the whole result beside the frame; `dictionary_columns` become
    categoricals chunk by chunk, as Parquet's dictionary encoding does for ids repeated over millions of rows.
    """
    import sqlalchemy
    from sqlalchemy import exc as sa_exc

    try:
        shown = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        raise UsageError(
            f"not a database URL: {url!r}",
            where=setting_key(name, "sql_url") or name,
            hint="e.g. sqlite:///crm.db or postgresql+psycopg://user@host/db",
        ) from None
    where = f"table '{name}' (SQL table '{table}' at {shown})"
    database = sqlalchemy.engine.make_url(url).database if url.startswith("sqlite") else None
    if database and database != ":memory:" and not Path(database).exists():  # SQLite would create an empty one
        raise DataError(
            f"database file {database} not found", where=where, hint="check the path (relative to the config file)"
        )
    try:
        engine = sqlalchemy.create_engine(url)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
        raise UsageError(f"cannot use this database URL: {exc}", where=where) from None
    try:
        with engine.connect() as connection:
            if not sqlalchemy.inspect(connection).has_table(table):
                key = setting_key(name, "sql_table") or "the table name"
                raise DataError("no such table", where=where, hint=f"check {key}")
            streaming = connection.execution_options(stream_results=True, max_row_buffer=chunk_rows)
            chunks = pd.read_sql_table(table, streaming, chunksize=chunk_rows)
            frame = _concat_chunks(chunks, dictionary_columns=dictionary_columns)
            if frame is None:  # an empty table still has its columns, for validation to name what is missing
                columns = [column["name"] for column in sqlalchemy.inspect(connection).get_columns(table)]
                frame = pd.DataFrame(columns=columns)
            return frame
    except sa_exc.OperationalError as exc:
        cause = str(exc.orig) if exc.orig is not None else str(exc).splitlines()[0]
        hint = (
            "another program holds a lock on the database: retry when it has finished"
            if "locked" in cause.lower()
            else "check the URL, the server and the credentials"
        )
        raise DataError(f"cannot read: {cause}", where=where, hint=hint) from None
    except sa_exc.SQLAlchemyError as exc:
        raise DataError(f"cannot read: {str(exc).splitlines()[0]}", where=where) from None
    finally:
        engine.dispose()


def _concat_chunks(chunks, *, dictionary_columns: tuple[str, ...]) -> pd.DataFrame | None:
    """One frame from a SQL reader's chunks (None when there were none); `dictionary_columns` as categoricals over
    the union of their values."""
    from pandas.api.types import union_categoricals

    parts: list[pd.DataFrame] = []
    for chunk in chunks:
        for column in dictionary_columns:
            if column in chunk:
                chunk[column] = chunk[column].astype("category")
        parts.append(chunk)
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    categorical = {c: union_categoricals([p[c] for p in parts]) for c in dictionary_columns if c in parts[0]}
    frame = pd.concat([p.drop(columns=list(categorical)) for p in parts], ignore_index=True)
    for column, values in categorical.items():
        frame[column] = pd.Categorical(values)
    return frame[list(parts[0].columns)]


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
